"""Bounces: map a delivery status notification to the mail and recipient that failed.

Every mail we send leaves with a VERP envelope sender,
``<local>+bounce-<outbox id>.<mac>@<domain>`` (the mac signs the id, so a
forged bounce cannot fail someone else's mail). A bounce comes back to that
address, and the outbox row it names is the mail that failed. When the VERP
address is lost (a broken forwarder), the original Message-ID in the report
(``message/rfc822`` or ``text/rfc822-headers`` part) finds the row instead.

A bounce proves itself only by coming back to a valid VERP address of ours
(mac verified) that names a row we sent, and only the addresses that row was
sent to count: anyone can write a DSN naming anyone, and one that suppressed
on its word alone could silence the agents. A report that proves nothing is
still kept (it joins the ticket the quoted Message-ID names, or its bytes are
kept as a blob) and a ``bounce.unproven`` event says why it changed nothing.

The failed addresses are read from the RFC 3464 ``message/delivery-status``
part and, for the many formats that are no DSN (qmail, Exchange, old
Sendmail …), by ``flufl.bounce``, which knows them better than a regex would.

A bounce is never a new ticket: :func:`find_ticket` runs first among the
thread finders and attaches it to the ticket of the mail that bounced; a
bounce that matches nothing we sent is recorded as a ``bounce.unmatched``
event (its raw bytes kept as a blob) and not stored as a ticket. A proven hard
bounce (``Status: 5.x.x``, or a permanent failure flufl.bounce reads) marks the
outbox row failed, records a ``mail.bounced`` event and suppresses automatic
mail to that address for ``[bounces] suppress_days``. A mail sent to a VERP address that is not a bounce
(an autoresponder answering the return path, as RFC 3834 asks) threads into
the ticket like any reply.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message as StdMessage
from email.parser import BytesHeaderParser, HeaderParser
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.context import MessageContext, installed
from mailgate.mail import signing
from mailgate.mail.parse import clean_header, message_ids
from mailgate.storage import audit
from mailgate.storage import threads as followup
from mailgate.storage.models import Outbox, Suppression, Ticket

_VERP = re.compile(
    r"^(?P<local>[^+@]+)\+bounce-(?P<id>\d{1,18})\.(?P<mac>[a-z2-7]{10})@(?P<domain>[^@]+)$", re.IGNORECASE
)
_BODY_MSGID = re.compile(rb"^message-id:[ \t]*(<[^<>\s]{1,1000}>)", re.IGNORECASE | re.MULTILINE)


def verp_address(key: bytes, support_address: str, outbox_id: int) -> str:
    local, _, domain = support_address.partition("@")
    tag = f"bounce-{outbox_id}"
    return f"{local}+{tag}.{signing.sign(key, tag)}@{domain}"


def parse_verp(key: bytes, address: str, support_address: str) -> int | None:
    """The outbox id a VERP address names, when it is ours and its mac is right."""
    match = _VERP.match(address.strip().strip("<>"))
    if not match:
        return None
    local, _, domain = support_address.lower().partition("@")
    if match["local"].lower() != local or match["domain"].lower() != domain:
        return None
    outbox_id = int(match["id"])
    return outbox_id if signing.verify(key, f"bounce-{outbox_id}", match["mac"]) else None


@dataclass(frozen=True)
class RecipientStatus:
    address: str
    status: str  # "5.1.1"; "" when the report gives none
    action: str  # failed, delayed, delivered, relayed, expanded; "" when unknown
    diagnostic: str = ""
    permanent: bool = False  # a permanent failure read by flufl.bounce from a report that is no DSN

    @property
    def hard(self) -> bool:
        return self.status.startswith("5") or (self.action == "failed" and not self.status.startswith("4"))

    @property
    def delayed(self) -> bool:
        return self.action == "delayed" or self.status.startswith("4")


@dataclass
class Report:
    """What a bounce says: the mail it is about and each recipient's fate."""

    is_dsn: bool = False
    original_message_id: str = ""
    recipients: list[RecipientStatus] = field(default_factory=list)
    is_feedback: bool = False  # an ARF feedback report (RFC 5965): a recipient marked our mail as abuse
    complainants: list[str] = field(default_factory=list)


@dataclass
class BounceNote:
    """Left in ``ctx.notes.bounce`` by the finder, settled after the store step."""

    outbox_id: int | None
    report: Report
    proven: bool = False  # came back to a valid VERP address of ours naming a row we sent
    why: str = ""  # why an unproven report changes nothing


def parse_report(raw: bytes) -> Report:
    """Read a DSN (RFC 3464 ``multipart/report; report-type=delivery-status``); never raises."""
    report = Report()
    try:
        message = email.message_from_bytes(raw)
    except Exception:
        return report
    report.is_dsn = (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "delivery-status"
    )
    report.is_feedback = str(message.get_param("report-type", "")).lower() == "feedback-report"
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            report.recipients += _recipient_blocks(part)
        elif ctype == "message/feedback-report":
            report.is_feedback = True
            report.complainants += _feedback_recipients(part)
        elif ctype == "message/rfc822" and not report.original_message_id:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, StdMessage):
                report.original_message_id = _first_id(str(inner.get("message-id", "")))
        elif ctype == "text/rfc822-headers" and not report.original_message_id:
            payload = part.get_payload(decode=True)
            text = payload if isinstance(payload, bytes) else b""
            report.original_message_id = _first_id(str(BytesHeaderParser().parsebytes(text).get("message-id", "")))
    if not report.original_message_id:  # a report in plain text: the quoted headers are in the body
        body = raw.split(b"\r\n\r\n", 1)[-1] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[-1]
        match = _BODY_MSGID.search(body)
        if match:
            report.original_message_id = match.group(1).decode("ascii", "replace")
    return report


def scanned_failures(raw: bytes) -> list[str]:
    """Permanently failed addresses as flufl.bounce reads them (qmail, Exchange, Sendmail …); never raises."""
    try:
        from flufl.bounce import scan_message

        found = scan_message(email.message_from_bytes(raw))
    except Exception:
        return []
    addresses = (a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in found)
    return sorted({a.strip().strip("<>").lower() for a in addresses if "@" in a})


def _recipient_blocks(part: StdMessage) -> list[RecipientStatus]:
    payload: Any = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if not blocks and isinstance(payload, str):
        blocks = [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload) if chunk.strip()]
    found = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        recipient = _addr(block.get("final-recipient", "")) or _addr(block.get("original-recipient", ""))
        if not recipient:
            continue
        status = clean_header(block.get("status", "")).split(" ", 1)[0]
        found.append(
            RecipientStatus(
                address=recipient,
                status=status,
                action=clean_header(block.get("action", "")).lower(),
                diagnostic=clean_header(block.get("diagnostic-code", ""))[:500],
            )
        )
    return found


def _feedback_recipients(part: StdMessage) -> list[str]:
    """The ``Original-Rcpt-To`` fields of an ARF report: who complained (RFC 5965 section 3.2)."""
    payload: Any = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    if not blocks and isinstance(payload, str):
        blocks = [HeaderParser().parsestr(payload)]
    found = [_addr(v) for block in blocks for v in block.get_all("original-rcpt-to", [])]
    return [a for a in found if "@" in a][:50]


def _addr(value: str) -> str:
    value = clean_header(value)
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").lower()


def _first_id(value: str) -> str:
    ids = message_ids(value)
    return ids[0] if ids else ""


def looks_like_bounce(ctx: MessageContext, to_verp: bool = False) -> bool:
    """A DSN or a feedback report by its type, or a report from MAILER-DAEMON or postmaster.

    A null envelope sender alone is not enough: RFC 3834 asks autoresponders to
    use one too, and their mail is stored like any other (the loop guard keeps
    it from getting an answer). Nor is the sender's name: a mail from
    postmaster@ with a human body and no report part is a person writing, unless
    it came back to a VERP return path of ours or flufl.bounce reads a failure in it.
    """
    if ctx.mail.kind in ("bounce", "feedback"):  # by type, or a system sender with a report part
        return True
    senders = (ctx.mail.header("return-path"), ctx.envelope.mail_from, ctx.mail.from_addr)
    if not any(v.strip("<> ").rpartition("@")[0].lower() in ("mailer-daemon", "postmaster") for v in senders):
        return False
    return to_verp or bool(scanned_failures(ctx.raw))


def _verp_id(ctx: MessageContext, key: bytes) -> int | None:
    support = ctx.services.config.support.address
    candidates = [
        *ctx.envelope.rcpt_tos,
        *ctx.mail.headers.get("delivered-to", ()),
        *ctx.mail.headers.get("x-original-to", ()),
        *ctx.mail.to,
    ]
    for candidate in candidates:
        outbox_id = parse_verp(key, candidate, support)
        if outbox_id is not None:
            return outbox_id
    return None


def find_ticket(ctx: MessageContext) -> Ticket | None:
    """Thread finder: a bounce or a VERP-addressed mail goes to the ticket of the mail it is about."""
    key = installed(ctx.services.outbound, "mailgate.outbound.plugin").key
    session = ctx.session
    outbox_id = _verp_id(ctx, key)
    if not looks_like_bounce(ctx, to_verp=outbox_id is not None):
        row = session.get(Outbox, outbox_id) if outbox_id is not None else None
        return session.get(Ticket, row.ticket_id) if row is not None and row.ticket_id else None
    report = parse_report(ctx.raw)
    row = session.get(Outbox, outbox_id) if outbox_id is not None else None
    proven = row is not None
    why = "" if proven else "not sent back to a valid VERP return path of ours naming a mail we sent"
    if row is None and report.original_message_id:  # only to find the ticket: a Message-ID proves nothing
        row = session.scalar(select(Outbox).where(Outbox.message_id == report.original_message_id).limit(1))
    note = BounceNote(outbox_id=row.id if row is not None else None, report=report, proven=proven, why=why)
    ctx.notes.bounce = note
    ticket = session.get(Ticket, row.ticket_id) if row is not None and row.ticket_id else None
    if ticket is None and report.original_message_id:
        ticket = followup.by_references(session, [report.original_message_id], [])
    if ticket is None:
        ticket = followup.by_token(session, ctx.mail.subject, ctx.services.config.support.token_prefix)
    if ticket is not None:
        return ticket
    # Nothing to attach it to: settle what we can, keep the bytes, and stop (a bounce is never a ticket).
    now = ctx.services.clock.now()
    settle(session, ctx, note, None)
    sha = ctx.services.blobs.put(ctx.raw)
    audit.record(
        session,
        now,
        "bounce.unmatched",
        actor=ctx.mail.from_addr or ctx.envelope.mail_from,
        message_id=ctx.mail.message_id,
        original_message_id=report.original_message_id,
        outbox=note.outbox_id,
        raw_sha256=sha,
    )
    ctx.stop("bounce")
    return None


def settle(session: Session, ctx: MessageContext, note: BounceNote, ticket: Ticket | None) -> None:
    """Act on a proven bounce: fail its outbox row, record events, suppress hard-bounced addresses.

    An unproven one only records why it changed nothing; a proven one acts only on the addresses
    its row was sent to.
    """
    services = ctx.services
    now = services.clock.now()
    row = session.get(Outbox, note.outbox_id) if note.outbox_id is not None else None
    reported = list(note.report.recipients)
    read = {r.address for r in reported}
    reported += [
        RecipientStatus(
            address=a, status="", action="failed", permanent=True, diagnostic="permanent failure (read by flufl.bounce)"
        )
        for a in scanned_failures(ctx.raw)
        if a not in read
    ]
    if not note.proven or row is None:
        audit.record(
            session,
            now,
            "bounce.unproven",
            ticket=ticket,
            message=ctx.message,
            actor="mailgate",
            reason=note.why or "names no mail we sent",
            outbox=note.outbox_id,
            reported=sorted({r.address for r in reported})[:50],
            changed="nothing",
        )
        return
    sent_to = {a.lower() for a in row.rcpt_tos}
    statuses = [r for r in reported if r.address in sent_to]
    foreign = sorted({r.address for r in reported if r.address not in sent_to})
    if foreign:
        audit.record(
            session,
            now,
            "bounce.foreign_address",
            ticket=ticket,
            message=ctx.message,
            actor="mailgate",
            reason="the report names addresses this mail was not sent to; they are left alone",
            outbox=row.id,
            addresses=foreign[:50],
        )
    if note.report.is_feedback:
        _complaint(session, ctx, note, ticket, row, sent_to)
        return
    if not reported and not note.report.is_dsn:
        # A bounce that is no standard report: the mail failed, for a reason we cannot read.
        statuses = [RecipientStatus(address=a, status="", action="failed") for a in row.rcpt_tos]
    days = installed(services.outbound, "mailgate.outbound.plugin").settings.bounces.suppress_days
    for status in statuses:
        detail = {
            "outbox": row.id if row else None,
            "mail_kind": row.kind if row else "",
            "recipient": status.address,
            "status": status.status,
            "action": status.action,
            "diagnostic": status.diagnostic,
        }
        if status.hard:
            if row is not None:
                row.status = "failed"
                row.last_error = f"bounced: {status.address} {status.status} {status.diagnostic}".strip()[:2000]
            audit.record(session, now, "mail.bounced", ticket=ticket, message=ctx.message, actor="mailgate", **detail)
            if days and (status.status.startswith("5") or status.permanent):
                suppress(
                    session,
                    status.address,
                    now + timedelta(days=days),
                    f"hard bounce {status.status}: {status.diagnostic}"[:500],
                    now,
                )
        elif status.delayed:
            audit.record(session, now, "mail.delayed", ticket=ticket, message=ctx.message, actor="mailgate", **detail)
        else:
            audit.record(
                session, now, "mail.delivery_report", ticket=ticket, message=ctx.message, actor="mailgate", **detail
            )


def _complaint(
    session: Session, ctx: MessageContext, note: BounceNote, ticket: Ticket | None, row: Outbox, sent_to: set[str]
) -> None:
    """A proven feedback report: no more automatic mail to the complainant, as after a hard bounce."""
    now = ctx.services.clock.now()
    days = installed(ctx.services.outbound, "mailgate.outbound.plugin").settings.bounces.suppress_days
    named = note.report.complainants or sorted(sent_to)  # ARF may redact the recipient: the row says who it was
    for address in (a for a in named if a in sent_to):
        audit.record(
            session,
            now,
            "mail.complaint",
            ticket=ticket,
            message=ctx.message,
            actor="mailgate",
            outbox=row.id,
            mail_kind=row.kind,
            recipient=address,
        )
        if days:
            suppress(session, address, now + timedelta(days=days), "feedback report (marked as abuse)", now)


def suppress(session: Session, address: str, until: Any, reason: str, now: Any) -> None:
    """No automatic mail to ``address`` until ``until`` (extends an existing suppression)."""
    row = session.get(Suppression, address)
    if row is None:
        session.add(Suppression(address=address, reason=reason, until=until, created_at=now))
    else:
        row.reason = reason
        if row.until is not None and row.until < until:
            row.until = until
