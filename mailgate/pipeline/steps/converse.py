"""The conversation step: what a stored mail does to its ticket (after the store, before the reactions).

What :mod:`mailgate.pipeline.steps.agents` decided before the store is carried out here, in
the message's transaction:

- a customer's mail: a new ticket that follows up an old one is linked to it;
  a stranger's mail held per ``stranger_policy = "hold"`` goes to the hold
  queue without an acknowledgment; a rating is recorded (no reopen); a close
  request resolves the ticket; a reply to a pending or recently resolved
  ticket reopens it;
- an agent's mail: its commands are checked all or nothing and applied, its
  answer is relayed to the customer and the watchers from the support
  address, the first response is timed, the resolved notice goes out after
  ``#close``, and the agent gets the transcript of the commands.

The agent's mail itself is stored once: with direction ``out`` when it was
relayed (its ``new_text`` is what the customer read), ``note`` otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select

from mailgate.config import AgentConfig
from mailgate.context import MessageContext
from mailgate.domain import answer as reply_answer
from mailgate.domain import command_plan, commands, lifecycle
from mailgate.domain.commands import Plan, Result
from mailgate.pipeline.steps import agents
from mailgate.pipeline.steps.relay import (
    change_status,
    relay,
    result_context,
    send_files,
    send_resolved_notice,
    send_transcript,
)
from mailgate.pipeline.steps.watchers import add as add_watchers
from mailgate.storage import audit
from mailgate.storage.models import Message, Ticket, Watcher

log = logging.getLogger("mailgate.conversation")


def converse(ctx: MessageContext) -> None:
    """Pipeline step."""
    ticket, message = ctx.ticket, ctx.message
    if ticket is None or message is None:
        return
    notes, now, session = ctx.notes, ctx.services.clock.now(), ctx.session
    sender = message.from_addr
    if notes.unproven_agent:
        audit.record(
            session,
            now,
            "agent.unproven",
            ticket=ticket,
            message=message,
            actor=sender,
            reason=notes.unproven_reason,
            commands_ignored=len(agents.reading(ctx).commands),
        )
    if notes.unproven_sender:
        audit.record(
            session,
            now,
            "mail.unproven",
            ticket=ticket,
            message=message,
            actor=sender,
            reason=agents.UNPROVEN_REASON,
            changed="nothing",
        )
    if ctx.new_ticket:
        _opened(ctx, ticket)
    agent = agents.agent_of(ctx)
    if agent is not None:
        _agent_mail(ctx, ticket, message, agent)
        return
    rating = notes.rating
    if isinstance(rating, lifecycle.Rating):
        ticket.csat = rating.value
        audit.record(
            session,
            now,
            "ticket.rated",
            ticket=ticket,
            message=message,
            actor=sender,
            rating=rating.value,
            comment=rating.comment[:2000],
        )
    elif notes.customer_close:
        if lifecycle.transition_error(ticket.status, "resolved") is None and ticket.status != "resolved":
            change_status(ctx, ticket, "resolved", sender, reason="closed by the customer")
            send_resolved_notice(ctx, ticket)
    elif notes.reopen:
        change_status(ctx, ticket, "open", sender, reason="the customer replied")
        audit.record(session, now, "ticket.reopened", ticket=ticket, message=message, actor=sender)


def _opened(ctx: MessageContext, ticket: Ticket) -> None:
    notes, session, now = ctx.notes, ctx.session, ctx.services.clock.now()
    follows = notes.follows
    if follows:
        ticket.follows_id = follows["id"]
        old = session.get(Ticket, follows["id"])
        audit.record(
            session,
            now,
            "ticket.follows",
            ticket=ticket,
            actor=ticket.customer.address,
            follows=follows["number"],
            status=follows["status"],
        )
        audit.record(session, now, "ticket.followed_up", ticket=old, actor=ticket.customer.address, by=ticket.number)
    stranger = notes.stranger
    if stranger:
        audit.record(
            session,
            now,
            "mail.stranger",
            ticket=ticket,
            message=ctx.message,
            actor=ticket.customer.address,
            reason="the sender may not write to the ticket the mail names",
            **stranger,
        )
        if stranger["policy"] == "hold":
            ticket.queue = agents.state(ctx.services).lifecycle.hold_queue
            ctx.route.auto_reply = False
    if notes.forwarded_by:
        audit.record(
            session,
            now,
            "ticket.forwarded",
            ticket=ticket,
            actor=notes.forwarded_by,
            customer=ticket.customer.address,
        )


def _agent_mail(ctx: MessageContext, ticket: Ticket, message: Message, agent: AgentConfig) -> None:
    now, session = ctx.services.clock.now(), ctx.session
    read = agents.reading(ctx)
    automatic = ctx.notes.automatic_agent_mail
    if automatic:
        audit.record(
            session, now, "agent.automatic_mail", ticket=ticket, message=message, actor=agent.address, reason=automatic
        )
        return
    plan = None
    texts: list[str] = []
    if read.commands:
        plan = command_plan.plan(read.commands, draft_of(session, ticket), directory(ctx), agent)
        if plan.ok and plan.canned:
            texts = _render_canned(ctx, ticket, agent, plan)
        if not plan.ok:
            audit.record(
                session,
                now,
                "commands.failed",
                ticket=ticket,
                message=message,
                actor=agent.address,
                results=[result_context(r) for r in plan.results],
            )
            send_transcript(ctx, ticket, agent, plan, relayed_to=[])
            return
        apply_plan(ctx, ticket, plan, agent)
    relayed_to: list[str] = []
    kept: list[dict[str, Any]] = []
    if not ctx.new_ticket and (plan is None or plan.sends_to_customer):
        found = reply_answer.of_agent_mail(ctx.raw, bool(ctx.mail.html), read.answer, read.commands, texts)
        if found.text:
            relayed_to, kept = relay(ctx, ticket, message, agent, found)
    if plan is not None and plan.resolved_notice:
        send_resolved_notice(ctx, ticket)
    if plan is not None and plan.files:
        send_files(ctx, ticket, agent)
    if plan is not None or kept:
        send_transcript(ctx, ticket, agent, plan, relayed_to=relayed_to, kept=kept)


def draft_of(session: Any, ticket: Ticket) -> commands.Draft:
    watchers = session.scalars(select(Watcher.address).where(Watcher.ticket_id == ticket.id).order_by(Watcher.id)).all()
    return commands.Draft(
        number=ticket.number,
        status=ticket.status,
        queue=ticket.queue,
        priority=ticket.priority,
        assignee=ticket.assignee,
        tags=tuple(ticket.tags or ()),
        watchers=tuple(watchers),
        customer=ticket.customer.address,
        time_spent=ticket.time_spent or 0,
        spam=ticket.spam,
    )


def directory(ctx: MessageContext) -> commands.Directory:
    config, session = ctx.services.config, ctx.session

    def find(number: int) -> commands.TicketInfo | None:
        found = session.scalar(select(Ticket).where(Ticket.number == number))
        if found is None:
            return None
        into = session.get(Ticket, found.merged_into_id) if found.merged_into_id else None
        merged = into.number if into is not None else None
        return commands.TicketInfo(found.number, found.status, merged)

    from mailgate.outbound import canned

    queues = tuple(dict.fromkeys([q.name for q in config.queues] + [config.support.default_queue]))
    return commands.Directory(
        agents=config.agents,
        queues=queues,
        canned=canned.names(ctx.services, ctx.ticket.locale if ctx.ticket else ""),
        is_ours=config.support.accepts,
        find_ticket=find,
        forwarded_sender=ctx.notes.forwarded_sender,
    )


def _render_canned(ctx: MessageContext, ticket: Ticket, agent: AgentConfig, plan: Plan) -> list[str]:
    from mailgate.outbound import canned

    texts = []
    for name in plan.canned:
        try:
            texts.append(canned.render(ctx.services, ticket, name, agent).strip())
        except Exception as exc:  # a broken canned answer fails the mail like a bad command
            plan.results.append(Result(f"#template {name}", False, f"the canned answer failed: {exc}"))
    return texts


def apply_plan(ctx: MessageContext, ticket: Ticket, plan: Plan, agent: AgentConfig) -> None:
    """Write the draft back and carry out the effects; every command has succeeded."""
    session, now, after = ctx.session, ctx.services.clock.now(), plan.after
    if after.status != ticket.status:
        change_status(ctx, ticket, after.status, agent.address, reason="command")
    ticket.queue, ticket.priority, ticket.assignee = after.queue, after.priority, after.assignee
    ticket.tags, ticket.time_spent, ticket.updated_at = list(after.tags), after.time_spent, now
    before = set(plan.before.watchers)
    gone = before - set(after.watchers)
    if gone:
        session.execute(delete(Watcher).where(Watcher.ticket_id == ticket.id, Watcher.address.in_(gone)))
        session.flush()
    limit = ctx.services.config.support.max_watchers
    added, left = add_watchers(session, ticket, [a for a in after.watchers if a not in before], max_total=limit)
    if left:  # a #cc past the ticket's limit adds no one, and says so
        audit.record(
            session,
            now,
            "watchers.limited",
            ticket=ticket,
            message=ctx.message,
            actor=agent.address,
            added=len(added),
            left_out=left,
            max_watchers=limit,
        )
    if plan.spam or plan.notspam:
        from mailgate.routing import spam

        if plan.spam:
            spam.mark_spam(session, ctx.services, ticket, agent.address, add_to_blocklist=plan.list_sender)
        else:
            spam.mark_not_spam(session, ctx.services, ticket, agent.address, add_to_allowlist=plan.list_sender)
    if plan.merge_into is not None:
        merge(ctx, ticket, plan.merge_into, agent.address)
    if plan.note or plan.spam:
        ctx.message.direction = "note"  # type: ignore[union-attr]
    audit.record(
        session,
        now,
        "commands.applied",
        ticket=ticket,
        message=ctx.message,
        actor=agent.address,
        results=[result_context(r) for r in plan.results],
    )


def merge(ctx: MessageContext, ticket: Ticket, number: int, actor: str) -> None:
    """``ticket`` into ticket ``number``: its people follow the target, its future mail goes there."""
    session, now = ctx.session, ctx.services.clock.now()
    target = session.scalar(select(Ticket).where(Ticket.number == number))
    assert target is not None  # checked by the plan
    ticket.merged_into_id = target.id
    people = [
        ticket.customer.address,
        *session.scalars(select(Watcher.address).where(Watcher.ticket_id == ticket.id)).all(),
    ]
    add_watchers(session, target, people, max_total=ctx.services.config.support.max_watchers)
    audit.record(session, now, "ticket.merged", ticket=ticket, actor=actor, into=number)
    audit.record(session, now, "ticket.merged_in", ticket=target, actor=actor, merged=ticket.number)


# --- mail to the customer and to the agent ------------------------------------------------------
