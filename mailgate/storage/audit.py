"""Audit events: every change to a ticket leaves one row saying what and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailgate.storage.models import Event, Message, Ticket


def record(
    session: Session,
    now: datetime,
    kind: str,
    *,
    ticket: Ticket | None = None,
    message: Message | None = None,
    actor: str = "",
    **detail: Any,
) -> Event:
    event = Event(
        ticket=ticket,  # the relationship: the ids follow at the flush, even for rows not flushed yet
        message=message,
        kind=kind,
        actor=actor,
        detail=detail,
        created_at=now,
    )
    session.add(event)
    return event
