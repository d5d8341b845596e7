"""Audit events: every change to a ticket leaves one row saying what and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from mailgate.storage import direct
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
        direct.write(session, _INSERT, {**values, "detail": detail, "created_at": now})
        return
    session.add(Event(ticket=ticket, message=message, kind=kind, actor=actor, detail=detail, created_at=now))


@dataclass(frozen=True)
class Pending:
    """One event of several recorded together (:func:`record_all`)."""

    kind: str
    ticket: Ticket | None = None
    message: Message | None = None
    actor: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def record_all(session: Session, now: datetime, events: Sequence[Pending]) -> None:
    """Write several events in their order: one statement for all of them (one round trip on
    PostgreSQL) when their rows exist and nothing waits for a flush, else one :func:`record` each."""
    ids = [(flushed_id(e.ticket), flushed_id(e.message)) for e in events]
    if len(events) < 2 or any(False in pair for pair in ids) or not nothing_pending(session):
        for e in events:
            record(session, now, e.kind, ticket=e.ticket, message=e.message, actor=e.actor, **e.detail)
        return
    rows = [
        {"ticket_id": t, "message_pk": m, "kind": e.kind, "actor": e.actor, "detail": e.detail, "created_at": now}
        for e, (t, m) in zip(events, ids, strict=True)
    ]
    direct.write_many(session, _INSERT, rows)
