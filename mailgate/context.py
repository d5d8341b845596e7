"""What travels with a message through the pipeline: one typed object, no dicts.

``Services`` is built once per process (config, clock, blob store, and what
later steps need); ``MessageContext`` is built per message and filled in by
the steps in order. A step reads what earlier steps wrote and writes its own
fields; nothing else is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mailgate.clock import Clock
from mailgate.config import Config
from mailgate.mail.parse import ParsedMail
from mailgate.storage.blobs import Blobs
from mailgate.storage.models import Message, Ticket


@dataclass
class Envelope:
    """Where a message came from: the SMTP envelope, or what stood in for it."""

    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    source: str = "smtp"  # smtp, imap, pipe, mbox, maildir
    spool_id: str = ""
    peer: str = ""
    quiet: bool = False  # store only: no acknowledgment, no notification (a bulk import of old mail)


@dataclass
class RouteDecision:
    """What routing decided for a new ticket (and the rules that decided it)."""

    queue: str = ""
    priority: str = "normal"
    tags: list[str] = field(default_factory=list)
    assignee: str | None = None
    spam: bool = False
    auto_reply: bool = True
    template: str = ""
    locale: str = ""  # a rule's locale for the ticket's mail ("" = tell it from the mail, see locale_detect)
    drop: bool = False
    rules: list[str] = field(default_factory=list)


@dataclass
class Services:
    """Long-lived collaborators of the pipeline, built once per process."""

    config: Config
    clock: Clock
    blobs: Blobs
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class MessageContext:
    raw: bytes
    envelope: Envelope
    session: Session
    services: Services
    mail: ParsedMail = field(default_factory=ParsedMail)
    dedupe_key: str = ""
    content_sha256: str = ""  # the content digest of a mail with a Message-ID (mailgate.mail.sameness)
    raw_sha256: str = ""
    ticket: Ticket | None = None
    new_ticket: bool = False
    thread_reason: str = ""  # how the ticket was found: token, reference, new …
    route: RouteDecision = field(default_factory=RouteDecision)
    message: Message | None = None
    verdict: str = ""  # new, reply, duplicate, dropped …
    stopped: bool = False
    notes: dict[str, Any] = field(default_factory=dict)

    def stop(self, verdict: str) -> None:
        """End the pipeline for this message (a duplicate, a dropped mail)."""
        self.verdict = verdict
        self.stopped = True


def sender_address(ctx: MessageContext) -> str:
    """Who wrote: the From address, else the envelope sender, else a placeholder that says so."""
    return ctx.mail.from_addr or ctx.envelope.mail_from.lower() or "unknown@invalid"
