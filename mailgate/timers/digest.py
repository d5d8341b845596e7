"""Each queue's daily digest to its escalation address: open, overdue, unassigned, oldest.

Sent once per queue and local day, at ``[sla] digest_at`` in the queue's
timezone (its business-hours timezone, else ``[sla] timezone``), or at the
first sweep after that time when the daemon was down. "Once" across several
daemons: the day a queue's digest was last sent is a row in ``counters``
(``digest:<queue>``) advanced by a conditional UPDATE (``… WHERE value <
:today``) in the transaction that writes the mail; only the daemon whose
UPDATE changed the row sends.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailgate.domain.sla import sla_of
from mailgate.outbound import notices
from mailgate.storage import claims
from mailgate.storage.models import Counter, Ticket

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.digest")

OPEN_STATUSES = ("new", "open", "pending")
OLDEST = 5


def counter_name(queue: str) -> str:
    name = f"digest:{queue}"
    return name if len(name) <= 50 else f"digest:{hashlib.sha256(queue.encode()).hexdigest()[:40]}"


def claim_day(session: Session, name: str, day: int) -> bool:
    """Advance counter ``name`` to ``day`` (YYYYMMDD) unless it is there already; True for the winner."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Counter).values(name=name, value=0).on_conflict_do_nothing(index_elements=["name"]))
    return claims.won(session, update(Counter).where(Counter.name == name, Counter.value < day).values(value=day))


def facts(session: Session, queue: str, now: datetime, timezone: str) -> dict[str, Any]:
    """What the digest says about one queue at ``now``."""
    open_ = and_(
        Ticket.queue == queue, Ticket.status.in_(OPEN_STATUSES), Ticket.spam.is_(False), Ticket.merged_into_id.is_(None)
    )
    overdue = and_(
        open_,
        or_(
            and_(Ticket.first_response_at.is_(None), Ticket.first_response_due_at <= now),
            and_(Ticket.status != "pending", Ticket.resolved_at.is_(None), Ticket.resolution_due_at <= now),
        ),
    )

    def count(condition: Any) -> int:
        return int(session.scalar(select(func.count(Ticket.id)).where(condition)) or 0)

    oldest = session.scalars(select(Ticket).where(open_).order_by(Ticket.created_at, Ticket.id).limit(OLDEST)).all()
    return {
        "queue": queue,
        "date": now.astimezone(ZoneInfo(timezone)).date().isoformat(),
        "open": count(open_),
        "overdue": count(overdue),
        "unassigned": count(and_(open_, Ticket.assignee.is_(None))),
        "oldest": [
            {
                "number": t.number,
                "subject": t.subject,
                "status": t.status,
                "assignee": t.assignee or "",
                "customer": t.customer.address,
                "created": notices.when(t.created_at, timezone),
                "age_days": (now - t.created_at).days,
            }
            for t in oldest
        ],
    }


def sweep(runtime: Runtime) -> int:
    """Send every digest whose local time has come today and that was not sent today."""
    sla, services = sla_of(runtime), runtime.services
    if sla.digest_at is None:
        return 0
    sent = 0
    for queue in services.config.queues:
        if not queue.escalation_address:
            continue
        now = services.clock.now()
        timezone = sla.timezone_of(queue.name)
        local = now.astimezone(ZoneInfo(timezone))
        if local.time() < sla.digest_at:
            continue
        day = int(local.strftime("%Y%m%d"))
        with runtime.sessions() as session, session.begin():
            if not claim_day(session, counter_name(queue.name), day):
                continue
            data = facts(session, queue.name, now, timezone)
            notices.send(
                session,
                services,
                ticket=None,
                kind="digest",
                recipients=[queue.escalation_address],
                context={"digest": data},
                locale=queue.locale,
            )
        notices.wake(services)
        log.info(
            "digest sent",
            extra={
                "queue": queue.name,
                "to": queue.escalation_address,
                "open": data["open"],
                "overdue": data["overdue"],
            },
        )
        sent += 1
    return sent
