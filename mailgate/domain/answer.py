"""What of an agent's mail reaches the customer: its new text, as HTML and as plain text.

An agent who answers from Gmail, Outlook, Thunderbird or Apple Mail writes
HTML: bold, lists, links with their text, tables, inline images. That
formatting is part of the answer, so the customer gets it:

- the mail's own HTML part is cut where its quoted history starts, by the
  structure the client wrote (:mod:`mailgate.domain.html_cut`), its command lines at
  the top are removed, and it is sanitized (:func:`mailgate.mail.sanitize.sanitize`);
- the text part is made from that same HTML (:func:`mailgate.mail.sanitize.html_to_text`),
  so both parts say the same thing;
- a mail without HTML, or whose HTML holds no text of its own after the cut,
  is relayed from its text part as the text rules cut it (:mod:`mailgate.domain.quotes`),
  with paragraphs as HTML paragraphs (no reliance on ``white-space: pre-wrap``,
  which some clients drop).

Canned answers (``#template``) follow the answer, as paragraphs of their own.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailgate.domain import html_cut, quotes
from mailgate.domain.commands import Command
from mailgate.mail.sanitize import html_to_text, sanitize

_PARAGRAPHS = re.compile(r"\n\s*\n")
_LINK = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class Answer:
    text: str
    html: str  # sanitized, or "" when there is nothing to relay


def text_as_html(text: str) -> str:
    """Plain text as HTML paragraphs with line breaks, links made clickable."""
    paragraphs = []
    for block in _PARAGRAPHS.split(text.strip()):
        escaped = html_lib.escape(block, quote=True)
        linked = _LINK.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
        paragraphs.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return "\n".join(p for p in paragraphs if p != "<p></p>")


def from_html(raw_html: str, commands: Sequence[Command]) -> Answer:
    """The new part of an HTML answer: cut, commands dropped, sanitized; empty when no text is left."""
    if not raw_html.strip():
        return Answer("", "")
    piece = html_cut.drop_commands(html_cut.cut(raw_html, quotes.is_intro), [c.line for c in commands])
    clean, _notes = sanitize(piece)
    text = html_to_text(clean).strip()
    return Answer(text, clean.strip()) if text else Answer("", "")


def of_agent_mail(
    raw: bytes, has_html: bool, text_answer: str, commands: Sequence[Command], canned: Sequence[str] = ()
) -> Answer:
    """The answer to relay: the HTML one when the mail has HTML with text of its own, else the text one."""
    found = from_html(html_cut.raw_html(raw), commands) if has_html else Answer("", "")
    if not found.text:
        text = text_answer.strip()
        found = Answer(text, text_as_html(text) if text else "")
    extra = [t.strip() for t in canned if t.strip()]
    if not extra:
        return found
    text = "\n\n".join([found.text, *extra]) if found.text else "\n\n".join(extra)
    html = "\n".join([found.html, *(text_as_html(t) for t in extra)]) if found.html else text_as_html(text)
    return Answer(text, html)
