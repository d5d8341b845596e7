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
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from mailgate.config import AgentConfig
from mailgate.context import MessageContext
from mailgate.domain import answer as reply_answer
from mailgate.domain import command_plan, commands, lifecycle
from mailgate.domain.commands import Plan, Result
from mailgate.mail import language as locale_detect
from mailgate.outbound import attachments as attachments_out
from mailgate.outbound import templating
from mailgate.pipeline.steps import agents
from mailgate.pipeline.steps.watchers import add as add_watchers
from mailgate.storage import audit
from mailgate.storage.models import Message, Ticket, Watcher

log = logging.getLogger("mailgate.conversation")

MANUAL = Path(__file__).resolve().parents[2] / "manual" / "agents.md"  # mailed back on #help, up to:
MANUAL_END = "<!-- end of the agents' manual"
UNPROVEN_FLAG = "unproven sender"  # on Message.parse_defects: the mail was stored but could not act (docs/security.md)

templating.register_kind(
    "files",
    {
        "agent": {"name": "Bob", "address": "bob@example.com"},
        "files": {"attached": ["screenshot.png"], "part": 1, "parts": 2,
                  "listed": [{"filename": "video.mp4", "size": "40.0 MB", "bytes": 41943040, "type": "video/mp4",
                              "reason": ""}]},
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
            "kept": [{"filename": "setup.exe", "size": "2.0 MB", "bytes": 2097152,
                      "type": "application/x-dosexec", "reason": "an executable (application/x-dosexec)"}],
            "note": False,
            "manual": "",
        },
    },
)


def _enqueue(ctx: MessageContext, **kwargs: Any) -> Any:
    """outbox.enqueue; imported here because the outbox imports the pipeline, which imports this step."""
    from mailgate.outbound import outbox

    return outbox.enqueue(ctx.session, ctx.services, **kwargs)


def converse(ctx: MessageContext) -> None:
    """Pipeline step."""
    ticket, message = ctx.ticket, ctx.message
    if ticket is None or message is None:
        return
    notes, now, session = ctx.notes, ctx.services.clock.now(), ctx.session
    sender = message.from_addr
    if notes.get("unproven_agent"):
        audit.record(
            session,
            now,
            "agent.unproven",
            ticket=ticket,
            message=message,
            actor=sender,
            reason=notes.get("unproven_reason", ""),
            commands_ignored=len(agents.reading(ctx).commands),
        )
    if notes.get("unproven_sender"):
        message.parse_defects = [*(message.parse_defects or []), UNPROVEN_FLAG]
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
    rating = notes.get("rating")
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
    elif notes.get("customer_close"):
        if lifecycle.transition_error(ticket.status, "resolved") is None and ticket.status != "resolved":
            _set_status(ctx, ticket, "resolved", sender, reason="closed by the customer")
            send_resolved_notice(ctx, ticket)
    elif notes.get("reopen"):
        _set_status(ctx, ticket, "open", sender, reason="the customer replied")
        audit.record(session, now, "ticket.reopened", ticket=ticket, message=message, actor=sender)


def _opened(ctx: MessageContext, ticket: Ticket) -> None:
    notes, session, now = ctx.notes, ctx.session, ctx.services.clock.now()
    ticket.locale = ticket_locale(ctx, ticket)
    follows = notes.get("follows")
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
    stranger = notes.get("stranger")
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
    if notes.get("forwarded_by"):
        audit.record(
            session,
            now,
            "ticket.forwarded",
            ticket=ticket,
            actor=notes["forwarded_by"],
            customer=ticket.customer.address,
        )


def ticket_locale(ctx: MessageContext, ticket: Ticket) -> str:
    """The language of the new ticket's mail: rule, Content-Language, the text's language, the queue's."""
    config = ctx.services.config
    configured = config.queue(ticket.queue)
    fallback = (configured.locale if configured else "") or config.support.locale or templating.DEFAULT_LOCALE
    outbound = ctx.services.extras.get("outbound")
    directories = tuple(outbound.settings.template_dirs) if outbound is not None else (templating.SHIPPED_DIR,)
    return locale_detect.choose(rule=ctx.route.locale, content_language=ctx.mail.header("content-language"),
                                text=ctx.notes.get("new_text") or ctx.mail.text, fallback=fallback,
                                known=locale_detect.available(directories))


def _set_status(ctx: MessageContext, ticket: Ticket, target: str, actor: str, reason: str = "") -> None:
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


def _agent_mail(ctx: MessageContext, ticket: Ticket, message: Message, agent: AgentConfig) -> None:
    now, session = ctx.services.clock.now(), ctx.session
    read = agents.reading(ctx)
    automatic = ctx.notes.get("automatic_agent_mail")
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
                results=[_result(r) for r in plan.results],
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


def _result(result: Result) -> dict[str, Any]:
    return {"command": result.line, "ok": result.ok, "result": result.text}


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
        forwarded_sender=ctx.notes.get("forwarded_sender", ""),
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
        _set_status(ctx, ticket, after.status, agent.address, reason="command")
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
        results=[_result(r) for r in plan.results],
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


def relay(ctx: MessageContext, ticket: Ticket, message: Message, agent: AgentConfig,
          found: reply_answer.Answer) -> tuple[list[str], list[dict[str, Any]]]:
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
    )
    if row is None:
        return [], []
    row.message_pk = message.id
    message.direction, message.new_text = "out", text
    if ticket.status == "new":
        _set_status(ctx, ticket, "open", agent.address, reason="first answer")
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
        session, now, "reply.relayed", ticket=ticket, message=message, actor=agent.address, to=addresses, outbox=row.id,
        files=[f.filename for f in files], kept=[k.filename for k in kept],
    )
    if kept:
        audit.record(session, now, "attachments.kept", ticket=ticket, message=message, actor=agent.address,
                     files=[{"filename": k.filename, "type": k.sniffed_type, "reason": k.reason} for k in kept])
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
            context={"agent": {"name": agent.name, "address": agent.address},
                     "files": {"attached": [f.filename for f in group], "listed": listed if part == 1 else [],
                               "part": part, "parts": len(groups)}},
            in_reply_to=ctx.message,
            automatic=True,
            reply_to=agent_reply_address(ctx, ticket, agent),
            attachments=group,
        )


def send_transcript(ctx: MessageContext, ticket: Ticket, agent: AgentConfig, plan: Plan | None,
                    relayed_to: list[str], kept: list[dict[str, Any]] | None = None) -> None:
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
                "results": [_result(r) for r in plan.results] if plan is not None else [],
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
