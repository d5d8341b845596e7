"""What rules can look at in a mail, computed lazily and at most once per mail.

Routing one mail against hundreds of rules must stay cheap, so every field
(and its casefolded form) is extracted the first time a rule asks for it and
then served from a cache. Each text field is a tuple of its non-empty values.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable

from mailgate.context import Envelope
from mailgate.mail.parse import ParsedMail
from mailgate.routing.spam import upstream_score


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _addresses(values: list[str]) -> list[str]:
    return [addr.strip().strip("<>").lower() for _, addr in email.utils.getaddresses(values) if "@" in addr]


def _sender(f: MailFacts) -> tuple[str, ...]:
    return _unique([f.mail.from_addr or f.envelope.mail_from.strip().strip("<>").lower()])


def _delivered_to(f: MailFacts) -> tuple[str, ...]:
    headers = f.mail.headers
    return _unique(
        _addresses([r for r in f.envelope.rcpt_tos])
        + _addresses(headers.get("delivered-to", []) + headers.get("x-original-to", []))
    )


def _attachments(f: MailFacts) -> list[tuple[str, str]]:
    return [(a.filename, a.content_type) for a in f.mail.attachments if not a.inline]


TEXT_FIELDS: dict[str, Callable[[MailFacts], tuple[str, ...]]] = {
    "from": _sender,
    "from_domain": lambda f: _unique([a.rpartition("@")[2] for a in f.text("from")]),
    "envelope_from": lambda f: _unique([f.envelope.mail_from.strip().strip("<>").lower()]),
    "to": lambda f: _unique(f.mail.to),
    "cc": lambda f: _unique(f.mail.cc),
    "delivered_to": _delivered_to,
    "recipient": lambda f: _unique([*f.text("to"), *f.text("cc"), *f.text("delivered_to")]),
    "subject": lambda f: _unique([f.mail.subject]),
    "body": lambda f: _unique([f.mail.text]),
    "attachment_name": lambda f: _unique([name for name, _ in _attachments(f)]),
    "attachment_type": lambda f: _unique([ctype for _, ctype in _attachments(f)]),
}
NUMBER_FIELDS: dict[str, Callable[[MailFacts], float | None]] = {
    "size": lambda f: float(f.mail.size),
    "spam_score": lambda f: upstream_score(f.mail),
}
BOOL_FIELDS: dict[str, Callable[[MailFacts], bool]] = {
    "attachment": lambda f: bool(_attachments(f)),
}


class MailFacts:
    """One mail (and its envelope) as the rule language sees it."""

    __slots__ = ("_folded", "_numbers", "_text", "envelope", "mail")

    def __init__(self, mail: ParsedMail, envelope: Envelope | None = None) -> None:
        self.mail: ParsedMail = mail
        self.envelope: Envelope = envelope or Envelope(source="explain")
        self._text: dict[str, tuple[str, ...]] = {}
        self._folded: dict[str, tuple[str, ...]] = {}
        self._numbers: dict[str, float | None] = {}

    def text(self, key: str) -> tuple[str, ...]:
        """The values of a text field, or of ``header:<lowercase name>`` (every occurrence)."""
        values = self._text.get(key)
        if values is None:
            header = key.startswith("header:")
            values = tuple(self.mail.headers.get(key[7:], ())) if header else TEXT_FIELDS[key](self)
            self._text[key] = values
        return values

    def folded(self, key: str) -> tuple[str, ...]:
        values = self._folded.get(key)
        if values is None:
            values = self._folded[key] = tuple(v.casefold() for v in self.text(key))
        return values

    def number(self, key: str) -> float | None:
        if key not in self._numbers:
            self._numbers[key] = NUMBER_FIELDS[key](self)
        return self._numbers[key]

    def flag(self, key: str) -> bool:
        return BOOL_FIELDS[key](self)
