"""The one pipeline every message goes through, whatever door it came in by.

The steps, in order, in one place::

    parse → dedupe → thread → authenticate → followup → route → drop → store → converse → react

Each step is a small function ``step(ctx) -> None`` that reads what the
earlier ones wrote on the :class:`~mailgate.context.MessageContext`; a step
may end the pipeline early with ``ctx.stop(verdict)`` (a duplicate, a mail
a rule drops). All of it runs inside one database transaction (a savepoint
of the worker's batch transaction), so a message is stored whole or not at all.

Each mail has a work budget (``[spool] mail_budget``), checked between steps
on the injected clock: a mail past it raises :class:`MailBudgetExceeded`,
which fails that mail alone (the worker quarantines it at once) instead of
holding every mail behind it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate import followup, parsing
from mailgate.agents import authenticate, follow_up
from mailgate.context import Envelope, MessageContext, Services
from mailgate.conversation import converse
from mailgate.models import Message, Ticket
from mailgate.react import react
from mailgate.routing import route
from mailgate.store import store

log = logging.getLogger("mailgate.pipeline")

Step = Callable[[MessageContext], None]


class MailBudgetExceeded(Exception):
    """One mail took more than its work budget; retrying it would cost as much again."""


def parse(ctx: MessageContext) -> None:
    ctx.mail = parsing.parse(ctx.raw)
    ctx.raw_sha256 = hashlib.sha256(ctx.raw).hexdigest()


def dedupe_key(message_id: str, raw_sha256: str) -> str:
    """Same Message-ID, or the same bytes when there is none: the same message."""
    if message_id:
        return hashlib.sha256(b"mid:" + message_id.encode("utf-8", "replace")).hexdigest()
    return raw_sha256


def dedupe(ctx: MessageContext) -> None:
    ctx.dedupe_key = dedupe_key(ctx.mail.message_id, ctx.raw_sha256)
    existing = ctx.session.scalar(select(Message.ticket_id).where(Message.dedupe_key == ctx.dedupe_key))
    if existing is not None:
        ctx.notes["duplicate_of_ticket_id"] = existing
        ctx.stop("duplicate")


def _by_token(ctx: MessageContext) -> Ticket | None:
    return followup.by_token(ctx.session, ctx.mail.subject, ctx.services.config.support.token_prefix)


def _by_reference(ctx: MessageContext) -> Ticket | None:
    return followup.by_references(ctx.session, ctx.mail.in_reply_to, ctx.mail.references)


THREAD_FINDERS: tuple[tuple[str, Callable[[MessageContext], Ticket | None]], ...] = (
    ("token", _by_token),
    ("reference", _by_reference),
)


def thread(ctx: MessageContext) -> None:
    """Find the ticket; finders registered in ``extras["thread_finders"]`` (signed addresses) go first."""
    for reason, finder in (*ctx.services.extras.get("thread_finders", ()), *THREAD_FINDERS):
        ticket = finder(ctx)
        if ctx.stopped:  # a finder may end the pipeline (a bounce that matches nothing we sent)
            return
        if ticket is not None:
            ctx.ticket, ctx.thread_reason, ctx.verdict = ticket, reason, "reply"
            return
    ctx.new_ticket, ctx.thread_reason, ctx.verdict = True, "new", "new"


def drop_check(ctx: MessageContext) -> None:
    if ctx.route.drop:
        log.info("dropped by rule", extra={"rules": ",".join(ctx.route.rules), "msgid": ctx.mail.message_id})
        ctx.stop("dropped")


STEPS: tuple[tuple[str, Step], ...] = (
    ("parse", parse),
    ("dedupe", dedupe),
    ("thread", thread),
    ("authenticate", authenticate),
    ("followup", follow_up),
    ("route", route),
    ("drop", drop_check),
    ("store", store),
    ("converse", converse),
    ("react", react),
)


def run(raw: bytes, envelope: Envelope, session: Session, services: Services,
        steps: Sequence[tuple[str, Step]] = STEPS) -> MessageContext:
    """Run every step on one message inside the caller's transaction."""
    ctx = MessageContext(raw=raw, envelope=envelope, session=session, services=services)
    budget = services.config.spool.mail_budget
    started = services.clock.now()
    for name, step in steps:
        step(ctx)
        if ctx.stopped:
            break
        spent = (services.clock.now() - started).total_seconds()
        if budget and spent > budget:
            raise MailBudgetExceeded(f"work budget of {budget:g}s spent: {spent:.1f}s after step {name}")
    session.flush()
    return ctx
