"""The timers of a ticket's life, as sweeps: SLA, pending reminder and auto-resolve, auto-close, digest.

This module is the plugin (``install`` validates ``[sla]`` and registers the
sweeps with :mod:`mailgate.ops.scheduler`) and holds the lifecycle sweeps:

- a ticket ``pending`` for ``pending_reminder_days`` gets one reminder to
  the customer (``reminded_at``; going pending again starts over);
- ``pending_resolve_days`` after the reminder (after going pending, when
  reminders are off) it is resolved, with a notice to the customer;
- a ticket ``resolved`` for longer than ``[lifecycle] reopen_days`` is
  closed (with a notice when ``close_notice = true``).

Every change is claimed with a conditional UPDATE whose WHERE repeats the
condition that made the ticket due, in a transaction of its own that also
writes the mail and the audit event: a second daemon doing the same at the
same time waits for the first to commit, finds the condition false, and
does nothing. The SLA sweep is in :mod:`mailgate.timers.escalation`, the digest in
:mod:`mailgate.timers.digest`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from mailgate.domain import lifecycle
from mailgate.domain.sla import SlaConfig, parse_sla, sla_of
from mailgate.ops.scheduler import Sweep, register
from mailgate.outbound import notices
from mailgate.storage import audit, claims
from mailgate.storage.models import Ticket
from mailgate.timers import digest, escalation

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.sweeps")

BATCH = 500
ACTOR = "mailgate"


def install(runtime: Runtime) -> None:
    """Check ``[sla]`` now (a bad value stops ``serve``), then register the reactor and the sweeps."""
    sla = runtime.services.sla = parse_sla(runtime.services.config)
    runtime.services.reactors.append(escalation.deadline_reactor)
    for name, run in (
        ("sla", escalation.sweep),
        ("pending", pending_sweep),
        ("autoclose", close_sweep),
        ("digest", digest.sweep),
    ):
        register(runtime, Sweep(name, sla.sweep_interval, run))


# -- pending: remind, then resolve -------------------------------------------------------------


def _not_reminded() -> ColumnElement[bool]:
    """No reminder in this pending period (one sent before the ticket last went pending does not count)."""
    return or_(Ticket.reminded_at.is_(None), Ticket.reminded_at < Ticket.pending_since)


def reminder_due(sla: SlaConfig, now: datetime) -> ColumnElement[bool]:
    return and_(
        Ticket.status == "pending",
        Ticket.spam.is_(False),
        Ticket.pending_since.is_not(None),
        Ticket.pending_since <= now - timedelta(days=sla.pending_reminder_days),
        _not_reminded(),
    )


def resolve_due(sla: SlaConfig, now: datetime) -> ColumnElement[bool]:
    wait = timedelta(days=sla.pending_resolve_days)
    base = and_(Ticket.status == "pending", Ticket.spam.is_(False), Ticket.pending_since.is_not(None))
    if sla.pending_reminder_days:
        return and_(
            base,
            Ticket.reminded_at.is_not(None),
            Ticket.reminded_at >= Ticket.pending_since,
            Ticket.reminded_at <= now - wait,
        )
    return and_(base, Ticket.pending_since <= now - wait)


def close_due(sla: SlaConfig, now: datetime) -> ColumnElement[bool]:
    return and_(
        Ticket.status == "resolved",
        Ticket.resolved_at.is_not(None),
        Ticket.resolved_at < now - timedelta(days=sla.reopen_days),
    )


def _claim(
    session: Session, ticket_id: int, condition: ColumnElement[bool], now: datetime, **values: Any
) -> Ticket | None:
    """The conditional UPDATE: the row is ours (and locked until commit) only if it is still due.

    The WHERE repeats the due condition, so a daemon that waited for another's
    commit finds it false. The status change itself is :func:`lifecycle.set_status`.
    """
    if not claims.won(
        session, update(Ticket).where(Ticket.id == ticket_id, condition).values(updated_at=now, **values)
    ):
        return None
    return session.get(Ticket, ticket_id)


def _due_ids(runtime: Runtime, condition: ColumnElement[bool]) -> list[int]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Ticket.id).where(condition).order_by(Ticket.id).limit(BATCH)))


def _customer_context(ticket: Ticket, sla: SlaConfig, **extra: Any) -> dict[str, Any]:
    return {
        "timers": {
            "pending_reminder_days": sla.pending_reminder_days,
            "pending_resolve_days": sla.pending_resolve_days,
            "reopen_days": sla.reopen_days,
            **extra,
        }
    }


def remind(runtime: Runtime, ticket_id: int) -> bool:
    sla, services = sla_of(runtime), runtime.services
    now = services.clock.now()
    with runtime.sessions() as session, session.begin():
        ticket = _claim(session, ticket_id, reminder_due(sla, now), now, reminded_at=now)
        if ticket is None:
            return False
        audit.record(
            session,
            now,
            "ticket.reminded",
            ticket=ticket,
            actor=ACTOR,
            pending_since=ticket.pending_since.isoformat() if ticket.pending_since else None,
        )
        notices.send(
            session,
            services,
            ticket=ticket,
            kind="pending_reminder",
            recipients=[ticket.customer.address],
            context=_customer_context(ticket, sla),
        )
    notices.wake(services)
    log.info("pending reminder", extra={"ticket": ticket.number, "to": ticket.customer.address})
    return True


def resolve(runtime: Runtime, ticket_id: int) -> bool:
    sla, services = sla_of(runtime), runtime.services
    now = services.clock.now()
    with runtime.sessions() as session, session.begin():
        ticket = _claim(session, ticket_id, resolve_due(sla, now), now)
        if ticket is None:
            return False
        lifecycle.set_status(ticket, "resolved", now)
        audit.record(
            session, now, "ticket.resolved", ticket=ticket, actor=ACTOR, reason="pending_timeout", status_from="pending"
        )
        notices.send(
            session,
            services,
            ticket=ticket,
            kind="pending_resolved",
            recipients=[ticket.customer.address],
            context=_customer_context(ticket, sla),
        )
    notices.wake(services)
    log.info("pending ticket resolved after no answer", extra={"ticket": ticket.number})
    return True


def close(runtime: Runtime, ticket_id: int) -> bool:
    sla, services = sla_of(runtime), runtime.services
    now = services.clock.now()
    with runtime.sessions() as session, session.begin():
        ticket = _claim(session, ticket_id, close_due(sla, now), now)
        if ticket is None:
            return False
        lifecycle.set_status(ticket, "closed", now)
        audit.record(
            session,
            now,
            "ticket.closed",
            ticket=ticket,
            actor=ACTOR,
            reason="reopen_window_passed",
            status_from="resolved",
        )
        if sla.close_notice:
            notices.send(
                session,
                services,
                ticket=ticket,
                kind="auto_closed",
                recipients=[ticket.customer.address],
                context=_customer_context(ticket, sla),
            )
    notices.wake(services)
    log.info("resolved ticket closed", extra={"ticket": ticket.number})
    return True


def pending_sweep(runtime: Runtime) -> dict[str, int]:
    """Remind, then resolve (a ticket resolved in this pass was reminded in an earlier one)."""
    sla = sla_of(runtime)
    counts = {"reminded": 0, "resolved": 0}
    now = runtime.services.clock.now()
    if sla.pending_resolve_days:
        counts["resolved"] = sum(resolve(runtime, i) for i in _due_ids(runtime, resolve_due(sla, now)))
    if sla.pending_reminder_days:
        counts["reminded"] = sum(remind(runtime, i) for i in _due_ids(runtime, reminder_due(sla, now)))
    return counts


def close_sweep(runtime: Runtime) -> int:
    sla = sla_of(runtime)
    now = runtime.services.clock.now()
    return sum(close(runtime, i) for i in _due_ids(runtime, close_due(sla, now)))
