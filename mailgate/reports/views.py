"""The JSON shapes of tickets, as `mailgate tickets list/show` print them (a public interface).

list: ``[{number, subject, status, queue, priority, customer, assignee, tags, messages, created_at,
updated_at}]``; show: the same plus ``messages``: ``[{direction, from, to, cc, subject, date, text,
message_id, attachments: [{filename, content_type, sniffed_type, size, sha256}]}]``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from mailgate.storage.models import Message, Ticket


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_summary(ticket: Ticket, message_count: int) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "queue": ticket.queue,
        "priority": ticket.priority,
        "customer": ticket.customer.address,
        "assignee": ticket.assignee,
        "tags": list(ticket.tags or []),
        "spam": ticket.spam,
        "messages": message_count,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
    }


def message_view(message: Message) -> dict[str, Any]:
    return {
        "direction": message.direction,
        "from": message.from_addr,
        "to": list(message.to_addrs or []),
        "cc": list(message.cc_addrs or []),
        "subject": message.subject,
        "date": _iso(message.date or message.created_at),
        "text": message.new_text or message.text,
        "message_id": message.message_id,
        "author": message.author,
        "defects": list(message.parse_defects or []),  # "unproven sender": stored, but it could not act
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "sniffed_type": a.sniffed_type,
                "size": a.size,
                "sha256": a.sha256,
                "part_of": a.part_of or None,
            }
            for a in message.attachments
        ],
    }


def list_tickets(
    session: Session, status: str | None = None, queue: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    counts = select(Message.ticket_id, func.count(Message.id).label("n")).group_by(Message.ticket_id).subquery()
    query = select(Ticket, func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.ticket_id == Ticket.id)
    if status:
        query = query.where(Ticket.status == status)
    if queue:
        query = query.where(Ticket.queue == queue)
    query = query.order_by(Ticket.number)
    if limit:
        query = query.limit(limit)
    return [ticket_summary(t, n) for t, n in session.execute(query).all()]


def get_ticket(session: Session, number: int) -> Ticket | None:
    return session.scalar(
        select(Ticket)
        .where(Ticket.number == number)
        .options(selectinload(Ticket.messages).selectinload(Message.attachments))
    )


def show_ticket(session: Session, number: int) -> dict[str, Any] | None:
    ticket = get_ticket(session, number)
    if ticket is None:
        return None
    data = ticket_summary(ticket, len(ticket.messages))
    data.update(
        first_response_at=_iso(ticket.first_response_at),
        resolved_at=_iso(ticket.resolved_at),
        closed_at=_iso(ticket.closed_at),
        time_spent=ticket.time_spent,
        csat=ticket.csat,
    )
    data["messages"] = [message_view(m) for m in ticket.messages]
    return data
