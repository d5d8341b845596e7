"""A ticket's attachments in the order ``mailgate tickets show`` lists them (message, then attachment)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.storage.models import Attachment, Message, Ticket


def ticket_attachments(session: Session, number: int) -> list[Attachment] | None:
    """None when there is no such ticket."""
    ticket = session.scalar(select(Ticket).where(Ticket.number == number))
    if ticket is None:
        return None
    return list(
        session.scalars(
            select(Attachment)
            .join(Message, Attachment.message_pk == Message.id)
            .where(Message.ticket_id == ticket.id)
            .order_by(Message.id, Attachment.id)
        )
    )
