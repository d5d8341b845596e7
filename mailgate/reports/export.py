"""``mailgate tickets export``: a ticket's whole conversation as mail (mbox) or as JSON.

The mbox holds, in order, every stored message of the ticket exactly as it
was received or sent (the raw bytes from the blob store), and the automatic
mail we sent for it (acknowledgments, notices) from the outbox. Lines are
LF, ``From `` lines inside a message are quoted mboxrd-style (``>From``,
``>>From`` …), so any mail reader opens it and nothing is lost. A message
whose raw blob is missing is rebuilt from the stored fields, with an
``X-Mailgate-Rebuilt: yes`` header so nobody takes it for the original.

JSON: ``tickets show --format json``'s object plus ``events`` (the audit
trail: ``{kind, actor, detail, created_at}``) and ``outbox`` (``{kind, status,
rcpt_tos, message_id, created_at, sent_at}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.reports.views import show_ticket
from mailgate.storage.blobs import Blobs
from mailgate.storage.models import Event, Message, Outbox, Ticket

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def conversation(session: Session, blobs: Blobs, ticket: Ticket) -> Iterator[tuple[str, datetime, bytes]]:
    """(envelope sender, time, raw bytes) of every mail of the ticket, oldest first."""
    items: list[tuple[datetime, int, str, bytes]] = []
    for message in session.scalars(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id)):
        items.append((message.created_at, len(items), message.from_addr or "MAILER-DAEMON", raw_of(blobs, message)))
    for row in session.scalars(
        select(Outbox)
        .where(Outbox.ticket_id == ticket.id, Outbox.message_pk.is_(None), Outbox.status == "sent")
        .order_by(Outbox.id)
    ):
        items.append((row.sent_at or row.created_at, len(items), row.mail_from or "MAILER-DAEMON", row.raw))
    for when, _order, sender, raw in sorted(items, key=lambda item: (item[0], item[1])):
        yield sender, when, raw


def raw_of(blobs: Blobs, message: Message) -> bytes:
    if message.raw_sha256:
        try:
            return blobs.get(message.raw_sha256)
        except (OSError, ValueError):
            pass
    mail = EmailMessage()
    mail["From"] = message.from_addr
    if message.to_addrs:
        mail["To"] = ", ".join(message.to_addrs)
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(message.date or message.created_at)
    if message.message_id:
        mail["Message-ID"] = message.message_id
    mail["X-Mailgate-Rebuilt"] = "yes"
    mail.set_content(message.text or "")
    return mail.as_bytes()


def write_mbox(handle: BinaryIO, mails: Iterator[tuple[str, datetime, bytes]]) -> int:
    count = 0
    for sender, when, raw in mails:
        body = raw.replace(b"\r\n", b"\n")
        body = _FROM_LINE.sub(rb">\1", body)
        if not body.endswith(b"\n"):
            body += b"\n"
        stamp = when.astimezone(UTC).strftime("%a %b %d %H:%M:%S %Y")
        sender = re.sub(r"\s", "", sender) or "MAILER-DAEMON"
        handle.write(f"From {sender} {stamp}\n".encode() + body + b"\n")
        count += 1
    return count


def export_mbox(session: Session, blobs: Blobs, number: int, path: Path) -> int | None:
    """Write the mbox; the number of mails written, or None when there is no such ticket."""
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    if ticket is None:
        return None
    with open(path, "wb") as handle:
        return write_mbox(handle, conversation(session, blobs, ticket))


def export_json(session: Session, number: int) -> dict[str, Any] | None:
    data = show_ticket(session, number)
    if data is None:
        return None
    ticket_id = session.scalar(select(Ticket.id).where(Ticket.number == number))
    data["events"] = [
        {"kind": e.kind, "actor": e.actor, "detail": e.detail, "created_at": e.created_at.isoformat()}
        for e in session.scalars(select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id))
    ]
    data["outbox"] = [
        {
            "kind": o.kind,
            "status": o.status,
            "rcpt_tos": list(o.rcpt_tos or []),
            "message_id": o.message_id,
            "created_at": o.created_at.isoformat(),
            "sent_at": o.sent_at.isoformat() if o.sent_at else None,
        }
        for o in session.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id).order_by(Outbox.id))
    ]
    return data
