"""What the parser returns: a mail and its attachments as mailgate reads them (see mailgate.mail.parse)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    payload: bytes
    content_id: str = ""
    inline: bool = False
    part_of: str = ""  # the attached message (its filename) this file was found in; "" for the mail itself


@dataclass
class ParsedMail:
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_addr: str = ""
    from_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    size: int = 0
    kind: str = "human"  # see mailgate.mail.automatic: human, bounce, feedback, auto-reply, auto-generated
    kind_reason: str = ""
    charsets: list[dict[str, str]] = field(default_factory=list)  # how each text part was decoded
    encrypted: bool = False

    def header(self, name: str) -> str:
        """The first value of a header, decoded, or ""."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    @property
    def automatic(self) -> bool:
        return self.kind != "human"
