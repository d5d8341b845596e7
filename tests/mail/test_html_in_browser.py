"""The HTML parts we send, as a browser engine builds them: headless Chromium's DOM, not pixels.

Chromium parses the HTML part of an acknowledgment and of a relayed answer
(from the Gmail-shaped fixture) and dumps the DOM it built; the checks read
that DOM. Skipped only where Debian's ``chromium`` is not installed (.ci/run
installs it).
"""

from __future__ import annotations

import email
import re
import shutil
import subprocess
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from mailgate.storage.models import Outbox
from tests.helpers import make_mail
from tests.pipeline.test_conversation_e2e import QUEUES, fixture_reply

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def dom(html: str, directory: Path) -> str:
    """The DOM Chromium builds from ``html`` (a file, as a mail client's viewer would load it)."""
    page = directory / "part.html"
    page.write_text(html, encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return result.stdout.decode("utf-8")


def html_part(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=policy.default).get_body(("html",)).get_content()


def rows(h, kind: str) -> list[bytes]:
    with h.session() as session:
        return list(session.scalars(select(Outbox.raw).where(Outbox.kind == kind).order_by(Outbox.id)).all())


def test_chromium_shows_the_acknowledgment_and_the_relayed_answer_with_their_formatting(
    tmp_path, make_config, harness_factory
):
    h = harness_factory(make_config(agents=[{"address": "bob@example.com", "name": "Bob"}], queues=QUEUES))
    h.deliver(make_mail())
    acknowledgment = dom(html_part(rows(h, "acknowledgment")[0]), tmp_path)
    assert "<strong>[#1]</strong>" in acknowledgment
    assert "<blockquote>Printer on fire</blockquote>" in acknowledgment

    notification = email.message_from_bytes(rows(h, "notify_new_ticket")[0], policy=policy.default)
    h.deliver(
        fixture_reply("gmail_answer.eml", notification),
        mail_from="bob@example.com",
        rcpt_tos=(notification["Reply-To"],),
    )
    answer = dom(html_part(rows(h, "agent_reply")[0]), tmp_path)
    body = answer.split("<body>", 1)[1]
    assert "<b>Unplug</b> the printer first" in body
    assert re.findall(r"<li>(.*?)</li>", body) == ["open the tray", "press reset for ten seconds"]
    assert '<a href="https://help.example.com/reset">reset guide</a>' in body
    assert body.index("Hello Alice,") < body.index("<ul>") < body.index("Bob, Example Support")
    for gone in ("#take", "gmail_quote", "my printer is on fire", "wrote:", "<script"):
        assert gone not in body
