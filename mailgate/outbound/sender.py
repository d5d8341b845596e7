"""Deliver outbox rows: to the smarthost over SMTP, or into the ``sent`` maildir.

The sweep (:func:`deliver_due`) is idempotent and safe with several daemons
on one database: it claims each due row with a conditional UPDATE (status
still pending, not claimed by someone else) and a lease, sends it outside any
transaction, then records the result. A temporary failure (4xx, a refused
connection, a timeout) is retried after ``retry_base``, doubling up to
``retry_max``; a permanent one (5xx), or a mail older than ``max_age``, marks
the row failed and records a ``mail.failed`` event on its ticket.

Exactly once where the transport allows it. Over SMTP the smarthost's 250 to
DATA is the delivery: what QUIT answers, or a connection that drops after the
250, changes nothing, and each row is marked sent in its own commit right
after its delivery, before QUIT is said (``on_delivered``). Only a crash between that 250 and that commit sends the
mail again (at least once is SMTP's limit); its Message-ID does not change, so
the receiver can drop the duplicate. The maildir sender names each file after
its row and never writes a row twice, so it is exactly once even across a crash.

:class:`Sender` is the seam: tests put a recorder in
``services.extras["sender"]`` instead of patching smtplib.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailgate.config import Config, OutboundConfig
from mailgate.context import Services
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.fsutil import fsync_dir
from mailgate.storage import audit, claims
from mailgate.storage.models import Outbox, Ticket

log = logging.getLogger("mailgate.sender")


Delivered = Callable[[dict[str, str]], None]


class Sender(Protocol):
    def send(
        self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, key: str = "", on_delivered: Delivered | None = None
    ) -> dict[str, str]:
        """Deliver one mail; return the recipients refused while others were accepted ({address: reply}).

        ``key`` names this delivery for good (its outbox row): a sender that can see an earlier delivery of
        the same key reports it delivered instead of delivering it twice. A sender that still has work after
        the delivery (an SMTP QUIT) calls ``on_delivered`` first, so the row is recorded before it.
        Raises TemporaryDeliveryError (try again later) or PermanentDeliveryError (give up); anything raised
        after ``on_delivered`` was called does not undo the delivery.
        """
        ...


class SmtpSender:
    """Hands mail to ``[outbound] smarthost`` with optional STARTTLS and AUTH."""

    def __init__(self, outbound: OutboundConfig, local_hostname: str) -> None:
        host, _, port = outbound.smarthost.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.outbound = outbound
        self.local_hostname = local_hostname

    def send(
        self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, key: str = "", on_delivered: Delivered | None = None
    ) -> dict[str, str]:
        options = ["SMTPUTF8"] if not all(a.isascii() for a in (mail_from, *rcpt_tos)) else []
        client = smtplib.SMTP(local_hostname=self.local_hostname, timeout=self.outbound.timeout)
        try:
            refused = self._transfer(client, mail_from, rcpt_tos, raw, options)
        except BaseException:
            client.close()
            raise
        result = {address: f"{code} {_text(message)}" for address, (code, message) in refused.items()}
        try:
            if on_delivered is not None:
                on_delivered(result)  # the 250 to DATA was the delivery: record it before saying goodbye
        finally:
            _quit_quietly(client, key)  # nothing here can undo the delivery
        return result

    def _transfer(
        self, client: smtplib.SMTP, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, options: list[str]
    ) -> dict[str, tuple[int, bytes]]:
        """Everything up to the DATA reply; an SMTP failure here means not delivered, as a Delivery error."""
        try:
            code, greeting = client.connect(self.host, self.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            client.ehlo()
            if self.outbound.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self.outbound.username:
                client.login(self.outbound.username, self.outbound.password)
            return client.sendmail(mail_from, list(rcpt_tos), raw, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{a}: {c} {_text(m)}" for a, (c, m) in exc.recipients.items())
            if all(c >= 500 for c in codes):
                raise PermanentDeliveryError(f"all recipients refused: {text}", min(codes)) from None
            raise TemporaryDeliveryError(f"recipients refused for now: {text}", min(codes)) from None
        except smtplib.SMTPAuthenticationError as exc:  # our config, not the mail: keep it and retry
            raise TemporaryDeliveryError(
                f"smarthost refused our login: {exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code
            ) from None
        except smtplib.SMTPResponseException as exc:
            error_class = PermanentDeliveryError if exc.smtp_code >= 500 else TemporaryDeliveryError
            raise error_class(f"{exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryDeliveryError(f"{type(exc).__name__}: {exc}") from None


def _quit_quietly(client: smtplib.SMTP, key: str) -> None:
    """Say QUIT after a delivery: a 421, a 5xx or a dropped connection here is logged, never a failure."""
    try:
        code, reply = client.docmd("QUIT")
        if code != 221:
            log.info(
                "smarthost answered QUIT oddly after the delivery; delivered all the same",
                extra={"outbox": key, "reply": f"{code} {_text(reply)}"},
            )
    except (smtplib.SMTPException, OSError) as exc:
        log.info(
            "connection lost after the delivery; delivered all the same",
            extra={"outbox": key, "error": f"{type(exc).__name__}: {exc}"},
        )
    finally:
        client.close()


def _text(message: Any) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


class MaildirSender:
    """With no smarthost: each mail lands in ``data_dir/sent``, a maildir, as a local MDA would write it.

    The file is named after the delivery's key (its outbox row) and linked into ``new/`` without
    overwriting, so a crash between the write and the commit that marks the row sent cannot make a
    second copy: when the row comes round again its file is already there (in ``new/``, or in ``cur/``
    once a mail client has read it) and the row counts as delivered.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(
        self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, key: str = "", on_delivered: Delivered | None = None
    ) -> dict[str, str]:
        envelope = f"Return-Path: <{mail_from}>\n" + "".join(f"Delivered-To: {r}\n" for r in rcpt_tos)
        name = _maildir_name(key) if key else f"{time.time_ns()}.{uuid.uuid4().hex}"
        try:
            for sub in ("tmp", "new", "cur"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
            if self._written(name):
                log.info("maildir file of this row already written; counted as delivered", extra={"outbox": key})
                return {}
            self._write_once(name, envelope.encode() + raw.replace(b"\r\n", b"\n"))
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to {self.directory}: {exc}") from None
        return {}

    def _written(self, name: str) -> bool:
        if (self.directory / "new" / name).exists() or (self.directory / "cur" / name).exists():
            return True
        prefix = name + ":"  # in cur/ a mail client adds its flags: "<name>:2,S"
        return any(entry.startswith(prefix) for entry in os.listdir(self.directory / "cur"))

    def _write_once(self, name: str, data: bytes) -> None:
        """Write in tmp/ (exclusively, fsynced), then link into new/: the link fails rather than overwrite."""
        tmp = self.directory / "tmp" / f"{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.directory / "new" / name)
        except FileExistsError:
            log.info("maildir file of this row written meanwhile; counted as delivered", extra={"file": name})
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.directory / "new")


def _maildir_name(key: str) -> str:
    """A maildir file name from a delivery key: no "/" and no ":" (the maildir flag separator)."""
    return key.replace("/", "_").replace(":", "_")


def delivery_key(outbox_id: int, message_id: str) -> str:
    """The stable name of one outbox row's delivery: its id and a digest of its Message-ID."""
    return f"{outbox_id}.{hashlib.sha256(message_id.encode()).hexdigest()[:16]}"


def default_sender(config: Config) -> Sender:
    if config.outbound.smarthost:
        return SmtpSender(config.outbound, config.hostname)
    return MaildirSender(config.sent_dir)


def backoff(attempts: int, base: float, ceiling: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2×base, 4×base … up to ceiling."""
    return float(min(ceiling, base * 2 ** max(0, attempts - 1)))


MAILDIR_LEASE = 15.0  # writing one file into storage/sent takes milliseconds, even on a loaded disk


def lease_seconds(config: Config) -> float:
    """How long a claim holds: longer than one delivery can take, and no longer.

    A process killed while it holds a claim strands that row until the lease
    runs out, so the lease is what a crash costs the customer in delay: the
    length of an SMTP conversation (its timeout, three times over) for a
    smarthost, a few seconds for the maildir.
    """
    if not config.outbound.smarthost:
        return MAILDIR_LEASE
    return max(60.0, 3 * config.outbound.timeout)


def deliver_due(
    sessions: sessionmaker[Session], services: Services, sender: Sender | None = None, limit: int | None = None
) -> int:
    """One sweep: send every due pending row once; return how many were delivered."""
    settings = services.extras["outbound"].settings.outbound
    sender = sender or services.extras["sender"]
    now = services.clock.now()
    due = (
        Outbox.status == "pending",
        Outbox.next_attempt_at <= now,
        or_(Outbox.claimed_until.is_(None), Outbox.claimed_until < now),
    )
    with sessions() as session, session.begin():
        ids = list(
            session.scalars(
                select(Outbox.id)
                .where(*due)
                .order_by(Outbox.next_attempt_at, Outbox.id)
                .limit(limit or settings.batch_size)
            )
        )
    delivered = 0
    for outbox_id in ids:
        lease = now + timedelta(seconds=lease_seconds(services.config))
        with sessions() as session, session.begin():
            claimed = (
                claims.won(session, update(Outbox).where(Outbox.id == outbox_id, *due).values(claimed_until=lease))
            )
            row = session.get(Outbox, outbox_id) if claimed else None
            job = (
                (row.mail_from, list(row.rcpt_tos), row.raw, row.created_at, row.message_id)
                if row is not None
                else None
            )
        if job is None:
            continue  # another sweep took it
        mail_from, rcpt_tos, raw, created_at, message_id = job
        recorded: list[dict[str, str]] = []

        def record(
            refused: dict[str, str], outbox_id: int = outbox_id, recorded: list[dict[str, str]] = recorded
        ) -> None:
            recorded.append(refused)  # first: whatever happens next, this row was delivered
            _finish(sessions, services, outbox_id, refused=refused)

        try:
            refused = sender.send(
                mail_from, rcpt_tos, raw, key=delivery_key(outbox_id, message_id), on_delivered=record
            )
        except Exception as exc:
            if recorded:  # raised after the delivery (a failed QUIT, a bug): delivered all the same, never retried
                log.exception("error after the delivery; the mail counts as delivered", extra={"outbox": outbox_id})
                delivered += 1
            elif isinstance(exc, PermanentDeliveryError):
                _finish(sessions, services, outbox_id, failed=str(exc), code=exc.code)
            else:  # TemporaryDeliveryError, or a bug in a sender: keep the mail and retry
                if not isinstance(exc, TemporaryDeliveryError):
                    log.exception("sender failed unexpectedly; will retry", extra={"outbox": outbox_id})
                _retry(
                    sessions,
                    services,
                    outbox_id,
                    created_at,
                    str(exc) or type(exc).__name__,
                    getattr(exc, "code", None),
                    settings.max_age,
                    settings.retry_base,
                    settings.retry_max,
                )
            continue
        if not recorded:  # a sender with nothing to do after the delivery records it here
            _finish(sessions, services, outbox_id, refused=refused)
        delivered += 1
    return delivered


def _retry(
    sessions: sessionmaker[Session],
    services: Services,
    outbox_id: int,
    created_at: datetime,
    error: str,
    code: int | None,
    max_age: float,
    base: float,
    ceiling: float,
) -> None:
    now = services.clock.now()
    if (now - created_at).total_seconds() >= max_age:
        _finish(
            sessions, services, outbox_id, failed=f"not delivered after {max_age:g}s; last error: {error}", code=code
        )
        return
    with sessions() as session, session.begin():
        row = session.get(Outbox, outbox_id)
        if row is None or row.status != "pending":
            return
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, base, ceiling))
        row.last_error, row.claimed_until = error[:2000], None
        log.warning(
            "delivery failed; will retry",
            extra={
                "outbox": outbox_id,
                "attempts": row.attempts,
                "next": row.next_attempt_at.isoformat(),
                "error": error,
            },
        )


def _finish(
    sessions: sessionmaker[Session],
    services: Services,
    outbox_id: int,
    *,
    failed: str = "",
    code: int | None = None,
    refused: dict[str, str] | None = None,
) -> None:
    now = services.clock.now()
    with sessions() as session, session.begin():
        row = session.get(Outbox, outbox_id)
        if row is None or row.status != "pending":
            return
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        row.attempts += 1
        row.claimed_until = None
        fields = {
            "outbox": row.id,
            "kind": row.kind,
            "to": ",".join(row.rcpt_tos),
            "ticket": ticket.number if ticket else "",
        }
        if failed:
            row.status, row.last_error = "failed", failed[:2000]
            audit.record(
                session,
                now,
                "mail.failed",
                ticket=ticket,
                actor="mailgate",
                outbox=row.id,
                mail_kind=row.kind,
                to=list(row.rcpt_tos),
                code=code,
                error=failed[:2000],
            )
            log.error("delivery failed for good", extra={**fields, "error": failed})
            return
        row.status, row.sent_at, row.last_error = "sent", now, ""
        if refused:
            row.last_error = "refused: " + "; ".join(f"{a}: {r}" for a, r in refused.items())
            audit.record(
                session,
                now,
                "mail.refused",
                ticket=ticket,
                actor="mailgate",
                outbox=row.id,
                mail_kind=row.kind,
                refused=refused,
            )
        log.info("mail sent", extra=fields)


def sweep(runtime: Any) -> None:
    """The scheduler's entry point: deliver until nothing due is left (bounded)."""
    for _ in range(100):
        if not deliver_due(runtime.sessions, runtime.services):
            break
