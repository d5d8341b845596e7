"""An agent's HTML answer is found in its mail without holding that mail several times over."""

from __future__ import annotations

import random
import tracemalloc
from email.message import EmailMessage

from mailgate.domain import html_cut


def _answer_with_attachment(size: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Bob <bob@example.com>"
    msg["To"] = "support+1.abc@example.com"
    msg["Subject"] = "Re: [#1] Logs"
    msg.set_content("Here is the fixed build.\n")
    msg.add_alternative("<p>Here is the <b>fixed</b> build.</p>", subtype="html")
    msg.add_attachment(random.Random(2).randbytes(size), maintype="application", subtype="zip", filename="build.zip")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def test_the_html_of_an_answer_with_a_big_attachment_is_read_in_about_three_times_the_mail():
    raw = _answer_with_attachment(3_000_000)
    tracemalloc.start()
    try:
        html = html_cut.raw_html(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert html.strip() == "<p>Here is the <b>fixed</b> build.</p>"
    assert peak < 4 * len(raw), f"peak {peak / len(raw):.1f} times the mail"  # message_from_bytes: about 7.7
