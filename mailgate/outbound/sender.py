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
its row and never writes a row twice, so it is exactly once even across a crash;
a sender that says so (``once_per_key``) has a sweep's rows claimed in one
statement and recorded in one commit after the last (:func:`_deliver_round`).

:class:`Sender` is the seam: tests put a recorder in
``services.sender`` instead of patching smtplib.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailgate.config import Config
from mailgate.context import Services, installed
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.outbound.transports import Sender, delivery_key
from mailgate.storage import audit
from mailgate.storage.models import Outbox, Ticket

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.sender")


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


_JOB = (Outbox.mail_from, Outbox.rcpt_tos, Outbox.raw, Outbox.created_at, Outbox.message_id)  # what a claim reads


def deliver_due(
    sessions: sessionmaker[Session], services: Services, sender: Sender | None = None, limit: int | None = None
) -> int:
    """One sweep: send every due pending row once; return how many were delivered."""
    settings = installed(services.outbound, "mailgate.outbound.plugin").settings.outbound
    sender = sender or installed(services.sender, "mailgate.outbound.plugin")
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
    if getattr(sender, "once_per_key", False):
        return _deliver_round(sessions, services, sender, ids, due)
    delivered = 0
    for outbox_id in ids:
        lease = now + timedelta(seconds=lease_seconds(services.config))
        with sessions() as session, session.begin():
            # one statement: the row comes back only to the sweep whose conditional UPDATE changed it
            job = (
                session.connection()
                .execute(
                    update(Outbox).where(Outbox.id == outbox_id, *due).values(claimed_until=lease).returning(*_JOB)
                )
                .first()
            )
        if job is None:
            continue  # another sweep took it
        mail_from, rcpt_tos, raw, created_at, message_id = job
        rcpt_tos = list(rcpt_tos)
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
            else:
                _not_delivered(sessions, services, outbox_id, created_at, exc)
            continue
        if not recorded:  # a sender with nothing to do after the delivery records it here
            _finish(sessions, services, outbox_id, refused=refused)
        delivered += 1
    return delivered


def _deliver_round(
    sessions: sessionmaker[Session], services: Services, sender: Sender, ids: list[int], due: tuple[Any, ...]
) -> int:
    """A sender that never delivers one key twice (the maildir): the round is claimed in one statement and
    the deliveries are recorded in one more, after the last. A crash before that commit leaves the rows
    claimed until their lease ends; the next round finds their files and counts them delivered."""
    if not ids:
        return 0
    lease = services.clock.now() + timedelta(seconds=lease_seconds(services.config))
    claim = update(Outbox).where(Outbox.id.in_(ids), *due).values(claimed_until=lease).returning(Outbox.id, *_JOB)
    with sessions() as session, session.begin():
        claimed = session.connection().execute(claim).all()
    place = {outbox_id: i for i, outbox_id in enumerate(ids)}
    jobs = sorted(claimed, key=lambda job: place[job[0]])  # in the lookup's order: the longest due first
    delivered: list[int] = []
    succeeded = 0
    for outbox_id, mail_from, rcpt_tos, raw, created_at, message_id in jobs:
        try:
            refused = sender.send(mail_from, list(rcpt_tos), raw, key=delivery_key(outbox_id, message_id))
        except Exception as exc:
            _not_delivered(sessions, services, outbox_id, created_at, exc)
            continue
        succeeded += 1
        if refused:
            _finish(sessions, services, outbox_id, refused=refused)
        else:
            delivered.append(outbox_id)
    if delivered:
        _mark_sent(sessions, services, delivered)
    return succeeded


def _not_delivered(
    sessions: sessionmaker[Session], services: Services, outbox_id: int, created_at: datetime, exc: Exception
) -> None:
    """A 5xx fails the row for good; anything else keeps it for a retry after its backoff."""
    settings = installed(services.outbound, "mailgate.outbound.plugin").settings.outbound
    if isinstance(exc, PermanentDeliveryError):
        _finish(sessions, services, outbox_id, failed=str(exc), code=exc.code)
        return
    if not isinstance(exc, TemporaryDeliveryError):  # a bug in a sender: keep the mail and retry
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


# A delivery's end: its rows marked sent, and back what the log line names.
_SENT = (
    update(Outbox)
    .where(Outbox.id.in_(bindparam("ids", expanding=True)), Outbox.status == "pending")
    .values(status="sent", sent_at=bindparam("now"), last_error="", attempts=Outbox.attempts + 1, claimed_until=None)
    .returning(
        Outbox.id,
        Outbox.kind,
        Outbox.rcpt_tos,
        select(Ticket.number).where(Ticket.id == Outbox.ticket_id).scalar_subquery().label("number"),
    )
)


def _mark_sent(sessions: sessionmaker[Session], services: Services, outbox_ids: list[int]) -> None:
    """The usual end, for one row or a round: one statement, which also reads what the log lines name."""
    with sessions() as session, session.begin():
        sent = session.connection().execute(_SENT, {"ids": outbox_ids, "now": services.clock.now()}).all()
    for row in sent:
        log.info(
            "mail sent",
            extra={"outbox": row.id, "kind": row.kind, "to": ",".join(row.rcpt_tos), "ticket": row.number or ""},
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
    if not failed and not refused:
        _mark_sent(sessions, services, [outbox_id])
        return
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


def sweep(runtime: Runtime) -> None:
    """The scheduler's entry point: deliver until nothing due is left (bounded)."""
    for _ in range(100):
        if not deliver_due(runtime.sessions, runtime.services):
            break
