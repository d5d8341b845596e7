"""What an agent's mail sends: the answer relayed to the customer, the files, the notices, the transcript.

Split from :mod:`mailgate.pipeline.steps.converse`, which decides what a mail
does to its ticket; this module writes the mails that follow from it, each an
outbox row in the message's transaction.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailgate.config import AgentConfig
from mailgate.context import MessageContext
from mailgate.domain import answer as reply_answer
from mailgate.domain import command_plan, lifecycle
from mailgate.domain.commands import Plan, Result
from mailgate.outbound import attachments as attachments_out
from mailgate.outbound import outbox, templating
from mailgate.storage import audit
from mailgate.storage.models import Message, Ticket, Watcher

log = logging.getLogger("mailgate.conversation")

MANUAL = Path(__file__).resolve().parents[2] / "manual" / "agents.md"  # mailed back on #help, up to:
MANUAL_END = "<!-- end of the agents' manual"

templating.register_kind(
    "files",
    {
        "agent": {"name": "Bob", "address": "bob@example.com"},
        "files": {
            "attached": ["screenshot.png"],
            "part": 1,
            "parts": 2,
            "listed": [
                {"filename": "video.mp4", "size": "40.0 MB", "bytes": 41943040, "type": "video/mp4", "reason": ""}
            ],
        },
    },
)
templating.register_kind(
    "transcript",
    {
        "agent": {"name": "Bob", "address": "bob@example.com"},
        "transcript": {
            "ok": True,
            "results": [{"command": "#take", "ok": True, "result": "assigned to Bob"}],
            "relayed_to": ["alice@customer.example"],
            "kept": [
                {
                    "filename": "setup.exe",
                    "size": "2.0 MB",
                    "bytes": 2097152,
                    "type": "application/x-dosexec",
                    "reason": "an executable (application/x-dosexec)",
                }
            ],
            "note": False,
            "manual": "",
        },
    },
)


def change_status(ctx: MessageContext, ticket: Ticket, target: str, actor: str, reason: str = "") -> None:
    before = ticket.status
    if lifecycle.set_status(ticket, target, ctx.services.clock.now()):
        audit.record(
            ctx.session,
            ctx.services.clock.now(),
            "ticket.status",
            ticket=ticket,
            actor=actor,
            status_from=before,
            status_to=target,
            reason=reason,
        )


# --- an agent's mail ----------------------------------------------------------------------------


def result_context(result: Result) -> dict[str, Any]:
    return {"command": result.line, "ok": result.ok, "result": result.text}


def _enqueue(ctx: MessageContext, **kwargs: Any) -> Any:
    return outbox.enqueue(ctx.session, ctx.services, **kwargs)


def customer_reply_address(ctx: MessageContext, ticket: Ticket) -> str:
    from mailgate.outbound import outbox

    return outbox.reply_address(ctx.services, ticket)


def agent_reply_address(ctx: MessageContext, ticket: Ticket, agent: AgentConfig) -> str:
    from mailgate.outbound import outbox

    return outbox.reply_address(ctx.services, ticket, agent.address)


def _last_from_customer(ctx: MessageContext, ticket: Ticket) -> Message | None:
    """The mail ours answers: the customer's latest, whose Message-ID their client knows."""
    return ctx.session.scalar(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.direction == "in")
        .order_by(Message.id.desc())
        .limit(1)
    )


def relay(
    ctx: MessageContext, ticket: Ticket, message: Message, agent: AgentConfig, found: reply_answer.Answer
) -> tuple[list[str], list[dict[str, Any]]]:
    """Send the agent's answer to the customer and the watchers, From the support address, with the agent's
    files; returns who got it, and the files kept on the ticket (with why) for the transcript."""
    config, session, now = ctx.services.config, ctx.session, ctx.services.clock.now()
    watchers = session.scalars(
        select(Watcher.address)
        .where(Watcher.ticket_id == ticket.id)
        .order_by(Watcher.id)
        .limit(config.support.max_watchers)
    ).all()
    recipients = [(ticket.customer.name, ticket.customer.address)] + [("", w) for w in watchers]
    recipients = [(n, a) for n, a in recipients if a != agent.address and not config.support.accepts(a)]
    if not recipients:
        return [], []
    text = found.text
    files, kept = attachments_out.for_customer(ctx.services, session, message, found.html)
    name = agent.name or config.support.name
    row = _enqueue(  # To the customer, the watchers in Cc: what a reply-all would do
        ctx,
        ticket=ticket,
        kind="agent_reply",
        recipients=recipients[:1],
        cc=recipients[1:],
        context={
            "reply": {"text": text, "html": found.html, "author_name": name, "author_address": ""},
            "agent": {"name": name, "address": ""},
        },
        in_reply_to=_last_from_customer(ctx, ticket),
        automatic=False,
        reply_to=customer_reply_address(ctx, ticket),
        sender_name=f"{name} via {config.support.name}",
        store_message=False,
        author=agent.address,
        attachments=files,
        message_pk=message.id,
    )
    if row is None:
        return [], []
    message.direction, message.new_text = "out", text
    if ticket.status == "new":
        change_status(ctx, ticket, "open", agent.address, reason="first answer")
    if lifecycle.record_first_response(ticket, now):
        audit.record(
            session,
            now,
            "ticket.first_response",
            ticket=ticket,
            message=message,
            actor=agent.address,
            seconds=int((now - ticket.created_at).total_seconds()),
        )
    addresses = [a for _, a in recipients]
    audit.record(
        session,
        now,
        "reply.relayed",
        ticket=ticket,
        message=message,
        actor=agent.address,
        to=addresses,
        outbox=row.id,
        files=[f.filename for f in files],
        kept=[k.filename for k in kept],
    )
    if kept:
        audit.record(
            session,
            now,
            "attachments.kept",
            ticket=ticket,
            message=message,
            actor=agent.address,
            files=[{"filename": k.filename, "type": k.sniffed_type, "reason": k.reason} for k in kept],
        )
    return addresses, [k.as_context() for k in kept]


def send_resolved_notice(ctx: MessageContext, ticket: Ticket) -> None:
    customer = ticket.customer
    _enqueue(
        ctx,
        ticket=ticket,
        kind="resolved",
        recipients=[(customer.name, customer.address)],
        in_reply_to=_last_from_customer(ctx, ticket),
        automatic=True,
        reply_to=customer_reply_address(ctx, ticket),
    )


def send_files(ctx: MessageContext, ticket: Ticket, agent: AgentConfig) -> None:
    """``#files``: the customer's files of the ticket to the agent, in mails each under the notification limit."""
    groups, left = attachments_out.file_mails(ctx.services, ctx.session, ticket.id)
    listed = [item.as_context() for item in left]
    for part, group in enumerate(groups or [[]], 1):
        _enqueue(
            ctx,
            ticket=ticket,
            kind="files",
            recipients=[(agent.name, agent.address)],
            context={
                "agent": {"name": agent.name, "address": agent.address},
                "files": {
                    "attached": [f.filename for f in group],
                    "listed": listed if part == 1 else [],
                    "part": part,
                    "parts": len(groups),
                },
            },
            in_reply_to=ctx.message,
            automatic=True,
            reply_to=agent_reply_address(ctx, ticket, agent),
            attachments=group,
        )


def send_transcript(
    ctx: MessageContext,
    ticket: Ticket,
    agent: AgentConfig,
    plan: Plan | None,
    relayed_to: list[str],
    kept: list[dict[str, Any]] | None = None,
) -> None:
    """The agent's receipt: what each command did, or why the mail changed nothing, and which of the agent's
    files stayed on the ticket instead of reaching the customer."""
    manual = ""
    if plan is not None and plan.help:
        try:
            manual = MANUAL.read_text(encoding="utf-8").split(MANUAL_END, 1)[0].strip()
        except OSError:
            manual = "Commands: " + ", ".join(f"#{word}" for word in command_plan.HANDLERS)
    _enqueue(
        ctx,
        ticket=ticket,
        kind="transcript",
        recipients=[(agent.name, agent.address)],
        context={
            "agent": {"name": agent.name, "address": agent.address},
            "transcript": {
                "ok": plan.ok if plan is not None else True,
                "results": [result_context(r) for r in plan.results] if plan is not None else [],
                "relayed_to": relayed_to,
                "kept": kept or [],
                "note": bool(plan is not None and plan.note and plan.ok),
                "manual": manual,
            },
        },
        in_reply_to=ctx.message,
        automatic=True,
        reply_to=agent_reply_address(ctx, ticket, agent),
    )
