"""Audit events: every change to a ticket leaves one row saying what and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from mailgate.storage.models import Event, Message, Ticket
from mailgate.storage.rows import flushed_id, nothing_pending, table

# Built once: an event is written for almost every mail, and the unit of work costs several times this insert.
_INSERT = insert(table(Event))


def record(
    session: Session,
    now: datetime,
    kind: str,
    *,
    ticket: Ticket | None = None,
    message: Message | None = None,
    actor: str = "",
    **detail: Any,
) -> None:
    """Write one event.

    When its ticket and message are already rows and nothing else waits for a flush, the event is one
    INSERT at once; otherwise it waits for the next flush with them, named by relationship. Either way
    the events of a ticket keep the order in which they were recorded.
    """
    ticket_id, message_pk = flushed_id(ticket), flushed_id(message)
    if ticket_id is not False and message_pk is not False and nothing_pending(session):
        values = {"ticket_id": ticket_id, "message_pk": message_pk, "kind": kind, "actor": actor}
        session.connection().execute(_INSERT, {**values, "detail": detail, "created_at": now})
        return
    session.add(Event(ticket=ticket, message=message, kind=kind, actor=actor, detail=detail, created_at=now))
