"""The scan's first looks (a line that cannot start a marker is skipped; an intro is joined over more
lines only when one of them ends with a colon) never change what a reply is cut into."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mailgate.domain import quotes
from tests.domain.test_quote_cases import CASES

REPLIES = Path(__file__).parents[1] / "data" / "replies"
PIECES = [
    "Thanks, it works now.",
    "On Mon, Jan 5, 2026 at 9:00 AM Bob <bob@x.example> wrote:",
    "On Mon, Jan 5, 2026",
    "at 9:00 AM Bob",
    "<bob@x.example>",
    "wrote:",
    "Le lun. 5 janv. 2026 à 09:00, Bob <",
    "bob@x.example> a écrit :",
    "El lunes, 5 de enero de 2026, Bob",
    "escribió:",
    "> old text",
    "| old",
    "2013/7/20 Bob <bob@x.example>",
    "2024-03-04 03:48:44,078 INFO  [worker-1] export started",
    "---------- Forwarded message ---------",
    "-----Original Message-----",
    "---- On Mon, 05 Jan 2026 09:00:00 +0100 Bob <bob@x.example> wrote ----",
    "________________________________",
    "From: Bob <bob@x.example>",
    "Sent: Monday, January 5, 2026 9:00 AM",
    "To: Support <support@example.com>",
    "Subject: Printer",
    "Date: Mon, 5 Jan 2026 09:00",
    "Von: Bob",
    "App version: 4.5.8",
    "Begin forwarded message:",
    "-- ",
    "Sent from my iPhone",
    "",
    "   ",
    "  indented: with a colon",
    "*From:* Bob",
]


def texts() -> list[str]:
    rng = random.Random(20261208)
    made = [text for text, _ in CASES.values()]
    made += [path.read_bytes().decode("utf-8") for path in sorted(REPLIES.glob("*.txt"))]
    made += ["\n".join(rng.choice(PIECES) for _ in range(rng.randint(1, 14))) for _ in range(3000)]
    return made


def test_the_shortcuts_cut_every_reply_as_the_full_scan_does(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = texts()
    quick = [quotes.split_reply(text) for text in corpus]
    monkeypatch.setattr(quotes._Scan, "may_start_marker", lambda self, i: True)
    monkeypatch.setattr(quotes._Scan, "longest_intro", lambda self, i: quotes.MAX_INTRO_LINES)
    full = [quotes.split_reply(text) for text in corpus]
    assert [i for i, (a, b) in enumerate(zip(quick, full, strict=True)) if a != b] == []


def test_prose_lines_are_skipped_without_being_looked_at() -> None:
    lines = ["Hello,", "", "the printer on the third floor is on fire again.", "Anna"]
    scan = quotes._Scan(lines)
    assert [scan.may_start_marker(i) for i in range(len(lines))] == [False, False, False, False]
    assert quotes.split_reply("\n".join(lines)).new_text == "\n".join(lines)
