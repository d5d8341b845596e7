"""Deliver outbox rows: to the smarthost over SMTP, or into the ``sent`` maildir.

The sweep (:func:`deliver_due`) is idempotent and safe with several daemons
on one database: it claims each due row with a conditional UPDATE (status
still pending, not claimed by someone else) and a lease, sends it outside any
transaction, then records the result. A temporary failure (4xx, a refused
connection, a timeout) is retried after ``retry_base``, doubling up to
``retry_max``; a permanent one (5xx), or a mail older than ``max_age``, marks
the row failed and records a ``mail.failed`` event on its ticket.

A crash between the smarthost's 250 and our record of it sends that mail
again when its lease ends: delivery is at least once, as with any MTA, and a
Message-ID that does not change lets the receiver drop the duplicate.

:class:`Sender` is the seam: tests put a recorder in
``services.extras["sender"]`` instead of patching smtplib.
"""

from __future__ import annotations

import logging
import mailbox
import os
import smtplib
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailgate import audit
from mailgate.config import Config, OutboundConfig
from mailgate.context import Services
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.fsutil import fsync_dir
from mailgate.models import Outbox, Ticket

log = logging.getLogger("mailgate.sender")


class Sender(Protocol):
    def send(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> dict[str, str]:
        """Deliver one mail; return the recipients refused while others were accepted ({address: reply}).

        Raises TemporaryDeliveryError (try again later) or PermanentDeliveryError (give up).
        """
        ...


class SmtpSender:
    """Hands mail to ``[outbound] smarthost`` with optional STARTTLS and AUTH."""

    def __init__(self, outbound: OutboundConfig, local_hostname: str) -> None:
        host, _, port = outbound.smarthost.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.outbound = outbound
        self.local_hostname = local_hostname

    def send(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> dict[str, str]:
        options = ["SMTPUTF8"] if not all(a.isascii() for a in (mail_from, *rcpt_tos)) else []
        try:
            with smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname,
                              timeout=self.outbound.timeout) as client:
                client.ehlo()
                if self.outbound.starttls:
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
                if self.outbound.username:
                    client.login(self.outbound.username, self.outbound.password)
                refused = client.sendmail(mail_from, list(rcpt_tos), raw, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{a}: {c} {_text(m)}" for a, (c, m) in exc.recipients.items())
            if all(c >= 500 for c in codes):
                raise PermanentDeliveryError(f"all recipients refused: {text}", min(codes)) from None
            raise TemporaryDeliveryError(f"recipients refused for now: {text}", min(codes)) from None
        except smtplib.SMTPAuthenticationError as exc:  # our config, not the mail: keep it and retry
            raise TemporaryDeliveryError(f"smarthost refused our login: {exc.smtp_code} {_text(exc.smtp_error)}",
                                         exc.smtp_code) from None
        except smtplib.SMTPResponseException as exc:
            error_class = PermanentDeliveryError if exc.smtp_code >= 500 else TemporaryDeliveryError
            raise error_class(f"{exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryDeliveryError(f"{type(exc).__name__}: {exc}") from None
        return {address: f"{code} {_text(message)}" for address, (code, message) in refused.items()}


def _text(message: Any) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


class MaildirSender:
    """With no smarthost: each mail lands in ``data_dir/sent``, a maildir, as a local MDA would write it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes) -> dict[str, str]:
        envelope = f"Return-Path: <{mail_from}>\n" + "".join(f"Delivered-To: {r}\n" for r in rcpt_tos)
        try:
            box = mailbox.Maildir(str(self.directory), create=True)
            key = box.add(envelope.encode() + raw.replace(b"\r\n", b"\n"))
            path = self.directory / "new" / key
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(path.parent)
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to {self.directory}: {exc}") from None
        return {}


def default_sender(config: Config) -> Sender:
    if config.outbound.smarthost:
        return SmtpSender(config.outbound, config.hostname)
    return MaildirSender(config.sent_dir)


def backoff(attempts: int, base: float, ceiling: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2×base, 4×base … up to ceiling."""
    return float(min(ceiling, base * 2 ** max(0, attempts - 1)))


def lease_seconds(config: Config) -> float:
    """How long a claim holds: longer than one SMTP conversation can take."""
    return max(60.0, 3 * config.outbound.timeout)


def deliver_due(sessions: sessionmaker[Session], services: Services, sender: Sender | None = None,
                limit: int | None = None) -> int:
    """One sweep: send every due pending row once; return how many were delivered."""
    settings = services.extras["outbound"].settings.outbound
    sender = sender or services.extras["sender"]
    now = services.clock.now()
    due = (Outbox.status == "pending", Outbox.next_attempt_at <= now,
           or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now))
    with sessions() as session, session.begin():
        ids = list(session.scalars(select(Outbox.id).where(*due).order_by(Outbox.next_attempt_at, Outbox.id)
                                   .limit(limit or settings.batch_size)))
    delivered = 0
    for outbox_id in ids:
        lease = now + timedelta(seconds=lease_seconds(services.config))
        with sessions() as session, session.begin():
            claimed = session.execute(update(Outbox).where(Outbox.id == outbox_id, *due)
                                      .values(claimed_until=lease)).rowcount == 1
            row = session.get(Outbox, outbox_id) if claimed else None
            job = (row.mail_from, list(row.rcpt_tos), row.raw, row.created_at) if row is not None else None
        if job is None:
            continue  # another sweep took it
        mail_from, rcpt_tos, raw, created_at = job
        try:
            refused = sender.send(mail_from, rcpt_tos, raw)
        except PermanentDeliveryError as exc:
            _finish(sessions, services, outbox_id, failed=str(exc), code=exc.code)
        except Exception as exc:  # TemporaryDeliveryError, or a bug in a sender: keep the mail and retry
            if not isinstance(exc, TemporaryDeliveryError):
                log.exception("sender failed unexpectedly; will retry", extra={"outbox": outbox_id})
            _retry(sessions, services, outbox_id, created_at, str(exc) or type(exc).__name__,
                   getattr(exc, "code", None), settings.max_age, settings.retry_base, settings.retry_max)
        else:
            _finish(sessions, services, outbox_id, refused=refused)
            delivered += 1
    return delivered


def _retry(sessions: sessionmaker[Session], services: Services, outbox_id: int, created_at: datetime, error: str,
           code: int | None, max_age: float, base: float, ceiling: float) -> None:
    now = services.clock.now()
    if (now - created_at).total_seconds() >= max_age:
        _finish(sessions, services, outbox_id, failed=f"not delivered after {max_age:g}s; last error: {error}",
                code=code)
        return
    with sessions() as session, session.begin():
        row = session.get(Outbox, outbox_id)
        if row is None or row.status != "pending":
            return
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, base, ceiling))
        row.last_error, row.claimed_until = error[:2000], None
        log.warning("delivery failed; will retry", extra={"outbox": outbox_id, "attempts": row.attempts,
                                                          "next": row.next_attempt_at.isoformat(), "error": error})


def _finish(sessions: sessionmaker[Session], services: Services, outbox_id: int, *, failed: str = "",
            code: int | None = None, refused: dict[str, str] | None = None) -> None:
    now = services.clock.now()
    with sessions() as session, session.begin():
        row = session.get(Outbox, outbox_id)
        if row is None or row.status != "pending":
            return
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        row.attempts += 1
        row.claimed_until = None
        fields = {"outbox": row.id, "kind": row.kind, "to": ",".join(row.rcpt_tos),
                  "ticket": ticket.number if ticket else ""}
        if failed:
            row.status, row.last_error = "failed", failed[:2000]
            audit.record(session, now, "mail.failed", ticket=ticket, actor="mailgate", outbox=row.id,
                         mail_kind=row.kind, to=list(row.rcpt_tos), code=code, error=failed[:2000])
            log.error("delivery failed for good", extra={**fields, "error": failed})
            return
        row.status, row.sent_at, row.last_error = "sent", now, ""
        if refused:
            row.last_error = "refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items())
            audit.record(session, now, "mail.refused", ticket=ticket, actor="mailgate", outbox=row.id,
                         mail_kind=row.kind, refused=refused)
        log.info("mail sent", extra=fields)


def sweep(runtime: Any) -> None:
    """The scheduler's entry point: deliver until nothing due is left (bounded)."""
    for _ in range(100):
        if not deliver_due(runtime.sessions, runtime.services):
            break
