"""Text replies the structure-less way: the measured misses of the text rules, each fixed."""

from __future__ import annotations

import pytest

from mailgate.domain.quotes import split_reply

CASES = {
    "an intro at the very top above unquoted text keeps that text": (
        "On Mon, Jan 5, 2026 at 9:00 AM Bob <bob@x.example> wrote:\nThanks, it works now.\n",
        "Thanks, it works now.",
    ),
    "a forward with no comment keeps the forwarded text": (
        "---------- Forwarded message ---------\nFrom: Bob <bob@x.example>\nDate: Mon, 5 Jan 2026\nSubject: x\n\n"
        "The real text here.\n",
        "The real text here.",
    ),
    "a German intro wrapped after <": (
        "Danke!\n\nAm Mo., 5. Jan. 2026 um 09:00 Uhr schrieb Bob <\nbob@x.example>:\n> alt\n",
        "Danke!",
    ),
    "a French intro wrapped after <": (
        "Merci\n\nLe lun. 5 janv. 2026 à 09:00, Bob <\nbob@x.example> a écrit :\n> ancien\n",
        "Merci",
    ),
    "Gmail's intro over four lines": (
        "Thanks\n\nOn Mon, Jan 5, 2026\nat 9:00 AM Bob\n<bob@x.example>\nwrote:\n> old\n",
        "Thanks",
    ),
    "Zoho's dashed intro": (
        "Thanks\n\n---- On Mon, 05 Jan 2026 09:00:00 +0100 Bob <bob@x.example> wrote ----\n\nold text\n",
        "Thanks",
    ),
    "a dated address above |-quoted lines": ("Thanks\n\n2013/7/20 Bob <bob@x.example>\n| old\n| more\n", "Thanks"),
    "Hotmail's header block starting with Date:": (
        "Thanks\n\nDate: Mon, 5 Jan 2026 09:00\nSubject: x\nFrom: bob@x.example\nTo: a@y.example\n\nold\n",
        "Thanks",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_new_text_of(case):
    text, expected = CASES[case]
    assert split_reply(text).new_text == expected


def test_a_table_drawn_with_bars_is_not_taken_for_a_quote():
    text = "Prices:\n| small | 10 |\n| large | 20 |\n"
    assert split_reply(text).new_text == text.strip()
