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

from mailgate.models import Ticket

log = logging.getLogger("mailgate.notices")

# The kinds of mail the timers write; each has a template templates/<locale>/<kind>.j2.
KINDS = ("sla_warning", "sla_escalation", "pending_reminder", "pending_resolved", "auto_closed", "digest")


def send(session: Session, services: Any, *, ticket: Ticket | None, kind: str, recipients: Iterable[str],
         context: dict[str, Any] | None = None, locale: str | None = None) -> bool:
    """Queue one automatic mail; False when there is nobody to send it to (or the outbox held it back)."""
    addresses = list(dict.fromkeys(a.strip().lower() for a in recipients if a and a.strip()))
    if not addresses:
        return False
    from mailgate import outbox

    row = outbox.enqueue(session, services, ticket=ticket, kind=kind, recipients=addresses,
                         context=context or {}, automatic=True, locale=locale)
    return row is not None


def wake(services: Any) -> None:
    """After the commit: let the sender deliver at once instead of at its next sweep."""
    waker = services.extras.get("wake_sender")
    if waker is not None:
        waker()


def when(instant: datetime | None, timezone: str) -> dict[str, str]:
    """An instant as templates show it: ISO in UTC and a local wall-clock reading."""
    if instant is None:
        return {"iso": "", "local": "", "timezone": timezone}
    local = instant.astimezone(ZoneInfo(timezone))
    return {"iso": instant.isoformat(), "local": local.strftime("%a %Y-%m-%d %H:%M"), "timezone": timezone}


def queue_agents(services: Any, queue: str) -> list[str]:
    """Who works a queue: its ``agents``, else every agent that lists it."""
    config = services.config
    entry = config.queue(queue)
    if entry is not None and entry.agents:
        return list(entry.agents)
    return [a.address for a in config.agents if queue in a.queues]


def escalation_address(services: Any, queue: str) -> str:
    entry = services.config.queue(queue)
    return entry.escalation_address if entry is not None else ""
