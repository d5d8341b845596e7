"""The SLA sweep: set deadlines, warn before a target is missed, escalate once when it is.

Each ticket has two targets, first response and resolution, with a due time
(set when the ticket is created, from :mod:`mailgate.domain.sla`), a warning mark
and an escalation mark. A target is *live* while the ticket is new or open
(a pending ticket waits for the customer, a resolved one is done), not spam,
not merged, and the target is not yet met.

Every mark is claimed with a conditional UPDATE (``… WHERE id = :id AND
<mark> IS NULL``) in its own short transaction, and the mail and the audit
event are written in that same transaction. Two daemons that pick the same
ticket at the same instant both run the UPDATE; PostgreSQL makes the second
wait for the first to commit and then re-checks the WHERE against the new
row, so it updates nothing (rowcount 0) and sends nothing. SQLite serialises
writers (BEGIN IMMEDIATE) to the same effect. Nothing is held in memory, so
a restart loses no timer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailgate.domain.sla import SlaConfig, sla_of
from mailgate.outbound import notices
from mailgate.storage import audit, claims
from mailgate.storage.models import Ticket

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.sla")

LIVE_STATUSES = ("new", "open")
BATCH = 500


@dataclass(frozen=True)
class Target:
    name: str
    due: InstrumentedAttribute[Any]
    met: InstrumentedAttribute[Any]
    warned: InstrumentedAttribute[Any]
    escalated: InstrumentedAttribute[Any]


FIRST_RESPONSE = Target(
    "first_response",
    Ticket.first_response_due_at,
    Ticket.first_response_at,
    Ticket.sla_warned_at,
    Ticket.sla_escalated_at,
)
RESOLUTION = Target(
    "resolution",
    Ticket.resolution_due_at,
    Ticket.resolved_at,
    Ticket.resolution_warned_at,
    Ticket.resolution_escalated_at,
)
TARGETS = (FIRST_RESPONSE, RESOLUTION)


def live(target: Target) -> ColumnElement[bool]:
    return and_(
        Ticket.status.in_(LIVE_STATUSES),
        Ticket.spam.is_(False),
        Ticket.merged_into_id.is_(None),
        target.met.is_(None),
        target.due.is_not(None),
    )


def set_deadlines(ticket: Ticket, sla: SlaConfig) -> bool:
    """Give a ticket its due times from its queue, priority and creation time; False if it has no SLA."""
    deadlines = sla.deadlines(ticket.queue, ticket.priority, ticket.created_at)
    if deadlines.first_response is None and deadlines.resolution is None:
        return False
    ticket.first_response_due_at = deadlines.first_response
    ticket.resolution_due_at = deadlines.resolution
    return True


def deadline_reactor(ctx: Any) -> None:
    """Pipeline reactor: a new ticket gets its due times in the transaction that creates it."""
    if ctx.new_ticket and ctx.ticket is not None:
        set_deadlines(ctx.ticket, sla_of_services(ctx.services))


def sla_of_services(services: Any) -> SlaConfig:
    return services.sla


def fill_deadlines(runtime: Runtime) -> int:
    """Tickets created before their queue had an SLA (or by another door) get their due times."""
    sla = sla_of(runtime)
    scope = []  # only tickets that will get a due time, so none is looked at again and again
    for name, queue in sla.queues.items():
        if queue.targets.first_response or queue.targets.resolution:
            scope.append(Ticket.queue == name)
        elif levels := [p for p, t in queue.by_priority.items() if t.first_response or t.resolution]:
            scope.append(and_(Ticket.queue == name, Ticket.priority.in_(levels)))
    if not scope:
        return 0
    done = 0
    with runtime.sessions() as session, session.begin():
        tickets = session.scalars(
            select(Ticket)
            .where(
                or_(*scope),
                Ticket.status.in_(LIVE_STATUSES),
                Ticket.first_response_due_at.is_(None),
                Ticket.resolution_due_at.is_(None),
                Ticket.first_response_at.is_(None),
                Ticket.resolved_at.is_(None),
            )
            .order_by(Ticket.id)
            .limit(BATCH)
        ).all()
        for ticket in tickets:
            done += set_deadlines(ticket, sla)
    return done


def due_for_warning(session: Session, target: Target, now: datetime, sla: SlaConfig) -> list[int]:
    return list(
        session.scalars(
            select(Ticket.id)
            .where(
                live(target),
                target.warned.is_(None),
                target.escalated.is_(None),
                target.due > now,
                target.due <= now + sla.warn_before,
            )
            .order_by(target.due)
            .limit(BATCH)
        )
    )


def due_for_escalation(session: Session, target: Target, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Ticket.id)
            .where(live(target), target.escalated.is_(None), target.due <= now)
            .order_by(target.due)
            .limit(BATCH)
        )
    )


def _claim(
    session: Session,
    ticket_id: int,
    target: Target,
    mark: InstrumentedAttribute[Any],
    extra: ColumnElement[bool],
    now: datetime,
) -> bool:
    return claims.won(
        session, update(Ticket).where(Ticket.id == ticket_id, mark.is_(None), live(target), extra).values({mark: now})
    )


def warn(runtime: Runtime, ticket_id: int, target: Target) -> bool:
    """Warn the assignee (else the queue's agents) that ``target`` will be missed; once per ticket."""
    services, sla = runtime.services, sla_of(runtime)
    now = services.clock.now()
    with runtime.sessions() as session, session.begin():
        window = and_(target.escalated.is_(None), target.due > now, target.due <= now + sla.warn_before)
        if not _claim(session, ticket_id, target, target.warned, window, now):
            return False
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        recipients = [ticket.assignee] if ticket.assignee else notices.queue_agents(services, ticket.queue)
        due = getattr(ticket, target.due.key)
        audit.record(
            session,
            now,
            "sla.warning",
            ticket=ticket,
            actor="mailgate",
            target=target.name,
            due=due.isoformat(),
            recipients=recipients,
        )
        notices.send(
            session,
            services,
            ticket=ticket,
            kind="sla_warning",
            recipients=recipients,
            context={"sla": _context(sla, ticket, target, due)},
        )
    notices.wake(services)
    log.info(
        "sla warning",
        extra={"ticket": ticket.number, "target": target.name, "due": due.isoformat(), "to": ",".join(recipients)},
    )
    return True


def escalate(runtime: Runtime, ticket_id: int, target: Target) -> bool:
    """The target is missed: raise the priority, tell the queue's escalation address, record it; once."""
    services, sla = runtime.services, sla_of(runtime)
    now = services.clock.now()
    with runtime.sessions() as session, session.begin():
        if not _claim(session, ticket_id, target, target.escalated, target.due <= now, now):
            return False
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        before, ticket.priority = ticket.priority, sla.raised(ticket.priority)
        ticket.updated_at = now
        address = notices.escalation_address(services, ticket.queue)
        due = getattr(ticket, target.due.key)
        audit.record(
            session,
            now,
            "sla.escalated",
            ticket=ticket,
            actor="mailgate",
            target=target.name,
            due=due.isoformat(),
            priority_from=before,
            priority_to=ticket.priority,
            notified=[address] if address else [],
        )
        notices.send(
            session,
            services,
            ticket=ticket,
            kind="sla_escalation",
            recipients=[address],
            context={"sla": _context(sla, ticket, target, due, before)},
        )
    notices.wake(services)
    log.warning(
        "sla missed; escalated",
        extra={
            "ticket": ticket.number,
            "queue": ticket.queue,
            "target": target.name,
            "due": due.isoformat(),
            "priority": ticket.priority,
            "to": address,
        },
    )
    hook = services.on_sla_breach
    if hook is not None:
        hook(ticket.queue, target.name)
    return True


def _context(sla: SlaConfig, ticket: Ticket, target: Target, due: datetime, before: str = "") -> dict[str, Any]:
    return {
        "target": target.name,
        "due": notices.when(due, sla.timezone_of(ticket.queue)),
        "priority_from": before or ticket.priority,
        "priority_to": ticket.priority,
    }


def sweep(runtime: Runtime) -> dict[str, int]:
    """One pass: deadlines, then escalations (missed), then warnings (about to be missed)."""
    sla = sla_of(runtime)
    counts = {"deadlines": fill_deadlines(runtime), "escalated": 0, "warned": 0}
    for target in TARGETS:
        now = runtime.services.clock.now()
        with runtime.sessions() as session:
            overdue = due_for_escalation(session, target, now)
            soon = due_for_warning(session, target, now, sla)
        counts["escalated"] += sum(escalate(runtime, ticket_id, target) for ticket_id in overdue)
        counts["warned"] += sum(warn(runtime, ticket_id, target) for ticket_id in soon)
    return counts
