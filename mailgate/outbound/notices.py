"""The mail the timers write (SLA warning, escalation, reminder, notices, digest), through the outbox.

The sweeps decide *that* a mail goes out; this module turns the decision
into an outbox row in the sweep's own transaction (so a mail exists exactly
when its claim committed) and keeps the template context of each kind in one
place, documented in docs/operations.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from mailgate.outbound import templating
from mailgate.storage.models import Ticket

log = logging.getLogger("mailgate.notices")

_DUE = {"iso": "2026-01-12T11:00:00+00:00", "local": "Mon 2026-01-12 12:00", "timezone": "Europe/Paris"}
_SLA = {"sla": {"target": "first_response", "due": _DUE, "priority_from": "normal", "priority_to": "high"}}
_TIMERS = {"timers": {"pending_reminder_days": 3, "pending_resolve_days": 4, "reopen_days": 7}}
_DIGEST = {
    "digest": {
        "queue": "support",
        "date": "2026-01-12",
        "open": 7,
        "overdue": 2,
        "unassigned": 3,
        "oldest": [
            {
                "number": 42,
                "subject": "Printer on fire",
                "status": "open",
                "assignee": "",
                "customer": "alice@customer.example",
                "created": _DUE,
                "age_days": 9,
            }
        ],
    }
}

# The kinds of mail the timers write, each with the names its template may use besides the base ones
# (sample values: `mailgate templates check` renders every template with them).
KINDS: dict[str, dict[str, Any]] = {
    "sla_warning": _SLA,  # to the assignee, else the queue's agents: a target is about to be missed
    "sla_escalation": _SLA,  # to the queue's escalation address: a target was missed
    "pending_reminder": _TIMERS,  # to the customer: we are waiting for your answer
    "pending_resolved": _TIMERS,  # to the customer: resolved, as no answer came
    "auto_closed": _TIMERS,  # to the customer (close_notice = true): the ticket is closed
    "digest": _DIGEST,  # to each queue's escalation address, daily
}
for _kind, _sample in KINDS.items():
    templating.register_kind(_kind, _sample)


def send(
    session: Session,
    services: Any,
    *,
    ticket: Ticket | None,
    kind: str,
    recipients: Iterable[str],
    context: dict[str, Any] | None = None,
    locale: str | None = None,
) -> bool:
    """Queue one automatic mail; False when there is nobody to send it to (or the outbox held it back)."""
    addresses = list(dict.fromkeys(a.strip().lower() for a in recipients if a and a.strip()))
    if not addresses:
        return False
    from mailgate.outbound import outbox

    row = outbox.enqueue(
        session,
        services,
        ticket=ticket,
        kind=kind,
        recipients=addresses,
        context=context or {},
        automatic=True,
        locale=locale,
    )
    return row is not None


def wake(services: Any) -> None:
    """After the commit: let the sender deliver at once instead of at its next sweep."""
    waker = services.wake_sender
    if waker is not None:
        waker()


def when(instant: datetime | None, timezone: str) -> dict[str, str]:
    """An instant as templates show it: ISO in UTC and a local wall-clock reading."""
    if instant is None:
        return {"iso": "", "local": "", "timezone": timezone}
    local = instant.astimezone(ZoneInfo(timezone))
    return {"iso": instant.isoformat(), "local": local.strftime("%a %Y-%m-%d %H:%M"), "timezone": timezone}


def queue_agents(services: Any, queue: str) -> list[str]:
    """Who works a queue (:meth:`mailgate.config.Config.queue_agents`, the same people a new ticket notifies)."""
    return services.config.queue_agents(queue)


def escalation_address(services: Any, queue: str) -> str:
    entry = services.config.queue(queue)
    return entry.escalation_address if entry is not None else ""
