"""``mailgate report``: per-queue figures over a window of time.

Two cohorts, so each figure means what its name says:

- tickets **opened** in the window: ``opened``, first-response times,
  SLA breach rate, time spent, top customers;
- tickets **resolved** in the window: ``resolved``, resolution times, CSAT.

Times are open time in the queue's business hours when ``[sla.queues.Q]``
has them, else elapsed time, in hours. The median of an even count is the
mean of the two middle values; the 90th percentile is the nearest rank (the
value at position ⌈0.9·n⌉ of the sorted list). A ticket breached its SLA
when a target's due time passed before the target was met (or is past and
still unmet); the rate is over opened tickets that had a target. CSAT is
the share of ratings that are positive (``good``, ``4`` or ``5``) among
rated tickets.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter as Tally
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailgate.domain.sla import SlaConfig
from mailgate.storage.models import Ticket

POSITIVE = frozenset({"good", "4", "5"})
TOP_CUSTOMERS = 5
COLUMNS = (
    "queue",
    "opened",
    "resolved",
    "first_response_median_h",
    "first_response_p90_h",
    "resolution_median_h",
    "resolution_p90_h",
    "sla_tickets",
    "sla_breached",
    "sla_breach_rate",
    "csat_rated",
    "csat_positive",
    "csat",
    "time_spent_h",
    "top_customers",
)


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def p90(values: Sequence[float]) -> float | None:
    """Nearest-rank 90th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _hours(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def breached(ticket: Ticket, now: datetime) -> bool:
    for due, met in (
        (ticket.first_response_due_at, ticket.first_response_at),
        (ticket.resolution_due_at, ticket.resolved_at),
    ):
        if due is not None and (met or now) > due:
            return True
    return False


def load(session: Session, since: datetime, until: datetime, queue: str | None) -> list[Ticket]:
    """Every ticket opened or resolved in [since, until), spam and merged ones left out."""
    query = select(Ticket).where(
        Ticket.spam.is_(False),
        Ticket.merged_into_id.is_(None),
        or_(Ticket.created_at.between(since, until), Ticket.resolved_at.between(since, until)),
    )
    if queue:
        query = query.where(Ticket.queue == queue)
    return list(session.scalars(query.order_by(Ticket.id)))


def queue_figures(
    name: str,
    tickets: list[Ticket],
    sla: SlaConfig,
    since: datetime,
    until: datetime,
) -> dict[str, Any]:
    opened = [t for t in tickets if since <= t.created_at < until]
    resolved = [t for t in tickets if t.resolved_at is not None and since <= t.resolved_at < until]

    def hours(start: datetime, end: datetime) -> float:
        return sla.elapsed(name, start, end) / timedelta(hours=1)

    first = [hours(t.created_at, t.first_response_at) for t in opened if t.first_response_at is not None]
    resolution = [hours(t.created_at, t.resolved_at) for t in resolved if t.resolved_at is not None]
    with_target = [t for t in opened if t.first_response_due_at is not None or t.resolution_due_at is not None]
    missed = sum(breached(t, until) for t in with_target)
    ratings = [t.csat for t in resolved if t.csat]
    positive = sum(r in POSITIVE for r in ratings)
    customers = Tally(t.customer.address for t in opened)
    return {
        "queue": name,
        "opened": len(opened),
        "resolved": len(resolved),
        "first_response_median_h": _hours(median(first)),
        "first_response_p90_h": _hours(p90(first)),
        "resolution_median_h": _hours(median(resolution)),
        "resolution_p90_h": _hours(p90(resolution)),
        "sla_tickets": len(with_target),
        "sla_breached": missed,
        "sla_breach_rate": _rate(missed, len(with_target)),
        "csat_rated": len(ratings),
        "csat_positive": positive,
        "csat": _rate(positive, len(ratings)),
        "time_spent_h": round(sum(t.time_spent or 0 for t in opened) / 3600, 2),
        "top_customers": [
            {"customer": c, "tickets": n}
            for c, n in sorted(customers.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CUSTOMERS]
        ],
    }


def build(
    session: Session, sla: SlaConfig, since: datetime, until: datetime, queue: str | None = None
) -> list[dict[str, Any]]:
    """One dict per queue (sorted by name), keys as in :data:`COLUMNS`."""
    tickets = load(session, since, until, queue)
    names = sorted({t.queue for t in tickets} | ({queue} if queue else set()))
    return [queue_figures(n, [t for t in tickets if t.queue == n], sla, since, until) for n in names]


def daily(
    session: Session, sla: SlaConfig, since: datetime, until: datetime, queue: str | None = None
) -> list[dict[str, Any]]:
    """Per UTC day: tickets opened and the median first-response hours (for the chart)."""
    days: dict[date, list[Ticket]] = {}
    day = since.date()
    while day <= (until - timedelta(microseconds=1)).date():
        days[day] = []
        day += timedelta(days=1)
    for ticket in load(session, since, until, queue):
        if since <= ticket.created_at < until:
            days.setdefault(ticket.created_at.date(), []).append(ticket)
    rows = []
    for day, tickets in sorted(days.items()):
        first = [
            sla.elapsed(t.queue, t.created_at, t.first_response_at) / timedelta(hours=1)
            for t in tickets
            if t.first_response_at is not None
        ]
        rows.append({"date": day.isoformat(), "opened": len(tickets), "first_response_median_h": _hours(median(first))})
    return rows


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row for a table or CSV: top customers as ``a@x (3); b@y (2)``."""
    return {**row, "top_customers": "; ".join(f"{c['customer']} ({c['tickets']})" for c in row["top_customers"])}
