"""Making one outgoing mail: its template rendered and its bytes built, nothing written.

What :func:`mailgate.outbound.outbox.prepare` does first, apart from the database: a template that
fails or bytes that cannot be built raise :class:`Unmade`, before anything of the mail exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import TemplateError

from mailgate.context import Services
from mailgate.domain.tokens import subject_with_token
from mailgate.mail import compose
from mailgate.outbound.template_context import build_context
from mailgate.outbound.templating import Templates
from mailgate.storage.models import Message, Ticket

log = logging.getLogger("mailgate.outbox")

# RFC 3834: "auto-replied" answers a mail; "auto-generated" is any other automatic mail; "" for a person's mail.
AUTO_SUBMITTED = {
    "acknowledgment": "auto-replied",
    "notify_new_ticket": "auto-generated",
    "notify_reply": "auto-generated",
    "resolved": "auto-generated",
    "loop_alert": "auto-generated",
    "agent_reply": "",
}

Recipient = str | tuple[str, str]  # "addr" or ("Display Name", "addr")


def auto_submitted(kind: str, automatic: bool) -> str:
    """The Auto-Submitted value of a mail: by kind, else auto-generated for any automatic mail."""
    return AUTO_SUBMITTED.get(kind, "auto-generated" if automatic else "")


def recipients(given: Sequence[Recipient]) -> list[tuple[str, str]]:
    """(name, lowercased address), each address once, in order."""
    seen: dict[str, str] = {}
    for item in given:
        name, addr = item if isinstance(item, tuple) else ("", item)
        addr = addr.strip().strip("<>").lower()
        if addr and addr not in seen:
            seen[addr] = name
    return [(name, addr) for addr, name in seen.items()]


class Unmade(Exception):
    """The mail cannot be made: the reason its ``mail.held`` event gives."""


@dataclass(frozen=True)
class Made:
    outgoing: compose.Outgoing
    raw: bytes
    text: str
    html: str


@dataclass(frozen=True)
class Wanted:
    """What the caller asked for, addresses and locale already resolved."""

    ticket: Ticket | None
    kind: str
    targets: list[tuple[str, str]]
    copies: list[tuple[str, str]]
    locale: str
    reply_to: str  # the Reply-To header ("" for none)
    answer_address: str  # where a reply threads (the template's reply_to)
    context: dict[str, Any] | None
    in_reply_to: Message | None
    automatic: bool
    sender_name: str | None
    attachments: Sequence[compose.OutAttachment]


def make(services: Services, templates: Templates, wanted: Wanted, now: datetime) -> Made:
    """Render ``wanted``'s template and build its bytes, with the ticket's token and threading headers."""
    config, ticket, kind = services.config, wanted.ticket, wanted.kind
    data = build_context(
        services,
        ticket=ticket,
        message=wanted.in_reply_to,
        locale=wanted.locale,
        reply_to=wanted.answer_address,
        extra=wanted.context,
    )
    try:
        rendered = templates.render(kind, wanted.locale, data, queue=ticket.queue if ticket else "")
    except TemplateError as exc:
        log.error("template failed; mail not written", extra={"kind": kind, "error": str(exc)})
        raise Unmade(f"template error: {type(exc).__name__}: {exc}") from exc
    subject = rendered.subject or (ticket.subject if ticket else kind)
    if ticket is not None:
        subject = subject_with_token(subject, ticket.number, config.support.token_prefix)
    parent_id, references = "", list[str]()
    if wanted.in_reply_to is not None:
        parent_id, references = compose.thread_headers(wanted.in_reply_to.message_id, wanted.in_reply_to.references)
    outgoing = compose.Outgoing(
        from_addr=config.support.address,
        from_name=wanted.sender_name or config.support.name,
        to=wanted.targets,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        date=now,
        message_id=compose.new_message_id(config.hostname),
        in_reply_to=parent_id,
        references=references,
        reply_to=wanted.reply_to,
        reply_to_name=config.support.name if wanted.reply_to else "",
        auto_submitted=auto_submitted(kind, wanted.automatic),
        loop_marker=config.support.address,
        cc=wanted.copies,
        attachments=tuple(wanted.attachments),
    )
    try:
        raw = compose.compose(outgoing)
    except ValueError as exc:
        raise Unmade(str(exc)) from exc
    return Made(outgoing, raw, rendered.text, rendered.html)
