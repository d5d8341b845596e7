"""The context every template renders with: the ticket, the message, the customer, the queue, support.

Its shape is a public interface (docs/outbound.md): admins' templates rely on
these names, so a key is added, never renamed.
"""

from __future__ import annotations

from typing import Any

from mailgate.config import Config
from mailgate.context import Services
from mailgate.domain.tokens import format_token
from mailgate.storage.models import Message, Ticket


def ticket_context(ticket: Ticket | None, config: Config) -> dict[str, Any]:
    if ticket is None:
        return {}
    prefix = config.support.token_prefix
    return {
        "number": ticket.number,
        "token": format_token(ticket.number, prefix),
        "subject": ticket.subject,
        "status": ticket.status,
        "queue": ticket.queue,
        "priority": ticket.priority,
        "assignee": ticket.assignee or "",
        "created_at": ticket.created_at.isoformat(),
    }


def message_context(message: Message | None) -> dict[str, Any]:
    if message is None:
        return {}
    return {
        "from_addr": message.from_addr,
        "from_name": message.from_name,
        "subject": message.subject,
        "text": message.text,
        "new_text": message.new_text,
        "date": (message.date or message.created_at).isoformat(),
        "message_id": message.message_id,
    }


def build_context(
    services: Services,
    *,
    ticket: Ticket | None,
    message: Message | None,
    locale: str,
    reply_to: str,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    """The documented template context (docs/outbound.md), then the caller's additions merged in."""
    config = services.config
    data: dict[str, Any] = {
        "ticket": ticket_context(ticket, config),
        "message": message_context(message),
        "customer": {"address": ticket.customer.address, "name": ticket.customer.name} if ticket else {},
        "queue": {"name": ticket.queue if ticket else "", "locale": locale},
        "support": {"name": config.support.name, "address": config.support.address},
        "reply_address": reply_to,
    }
    for key, value in (extra or {}).items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) and isinstance(value, dict) else value
    return data
