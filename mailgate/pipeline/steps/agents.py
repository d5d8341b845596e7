"""Agents work by mail: the plugin, and the pipeline steps before the store step.

The steps, in pipeline order (see :data:`mailgate.pipeline.run.STEPS`):

- the thread finder ``signed`` (registered here, tried first): a mail to a
  signed reply address ``support+<ticket>.<mac>@…`` joins that ticket, and
  the step remembers whom the address was made for;
- ``authenticate``: a mail From an ``[[agents]]`` address is the agent's only
  when it proves it (:mod:`mailgate.domain.agent_auth`); otherwise it is handled as
  a customer's mail and the conversation step records why;
- ``followup``: where the mail goes and what it will do. An agent's mail
  keeps its ticket (``#fwd`` opens a new one on behalf of the forwarded
  mail's sender). Any other mail that names a ticket it may not write to
  (not the customer, a watcher, a signed address or a known Message-ID)
  follows ``[lifecycle] stranger_policy``; a follow-up to a closed ticket, or
  to one resolved more than ``reopen_days`` ago, opens a new ticket that
  references it; a rating or a close request is noted for later.

The conversation step after the store (:mod:`mailgate.pipeline.steps.converse`) carries
out what these steps decided. Both read the text of the mail only once,
through :func:`reading`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email.utils import parseaddr
from typing import TYPE_CHECKING

from sqlalchemy import select

from mailgate.config import AgentConfig
from mailgate.context import MessageContext, Services
from mailgate.domain import agent_auth, lifecycle
from mailgate.domain.agent_auth import AuthSettings
from mailgate.domain.commands import Command, parse_commands
from mailgate.domain.lifecycle import LifecycleSettings
from mailgate.domain.quote_patterns import LANGUAGES
from mailgate.domain.quotes import Reply, split_reply
from mailgate.domain.tokens import clean_subject
from mailgate.mail import addresses
from mailgate.mail import parse as parsing
from mailgate.outbound.loopguard import automatic_reason, incoming_from
from mailgate.storage.keys import load_key
from mailgate.storage.models import Ticket, Watcher

if TYPE_CHECKING:
    from mailgate.app import Runtime

MAX_MERGE_HOPS = 10


@dataclass(frozen=True)
class AgentsState:
    """What the plugin keeps in ``services.agents``."""

    key: bytes
    auth: AuthSettings
    lifecycle: LifecycleSettings


def install(runtime: Runtime) -> None:
    """Check ``[agent_auth]`` and ``[lifecycle]`` now (a bad value stops ``serve``); register the finder."""
    services: Services = runtime.services
    config = services.config
    services.agents = AgentsState(
        key=load_key(config, runtime.engine),
        auth=agent_auth.parse_settings(config),
        lifecycle=lifecycle.parse_settings(config),
    )
    finders = services.thread_finders
    finders.insert(0, ("signed", find_by_signed_address))


def state(services: Services) -> AgentsState:
    found = services.agents
    if not isinstance(found, AgentsState):
        raise RuntimeError("mailgate.pipeline.steps.agents is not installed in this runtime")
    return found


@dataclass(frozen=True)
class Reading:
    """The text of one mail, read once: its parts, the commands at its top, the answer below them."""

    reply: Reply
    commands: list[Command]
    answer: str


def read_text(text: str) -> Reading:
    """Read a mail's text: a function of the text alone, so a worker may read it before its transaction."""
    reply = split_reply(text)
    commands, answer = parse_commands(reply.new_text)
    return Reading(reply, commands, answer)


def reading(ctx: MessageContext) -> Reading:
    found = ctx.notes.reading
    if isinstance(found, Reading):
        return found
    result = ctx.notes.reading = read_text(ctx.mail.text or "")
    return result


# --- signed reply addresses ---------------------------------------------------------------------


def _recipients(ctx: MessageContext) -> list[str]:
    found = [
        *ctx.envelope.rcpt_tos,
        *ctx.mail.to,
        *ctx.mail.cc,
        *ctx.mail.headers.get("delivered-to", []),
        *ctx.mail.headers.get("x-original-to", []),
    ]
    return list(dict.fromkeys(addresses.address_of(a).lower() for a in found if a))[:50]


def find_by_signed_address(ctx: MessageContext) -> Ticket | None:
    """Thread finder: a signed reply address of ours names the ticket (a wrong mac names nothing)."""
    key, config = state(ctx.services).key, ctx.services.config
    for address in _recipients(ctx):
        signed = agent_auth.parse_reply_address(address)
        if signed is None or not config.support.accepts(address):
            continue
        ticket = ctx.session.scalar(select(Ticket).where(Ticket.number == signed.number))
        if ticket is None:
            continue
        candidates = [("agent", a.address) for a in config.agents]
        candidates.append(("customer", ticket.customer.address))
        for role, owner in candidates:
            if agent_auth.signed_for(key, signed, role, owner):
                ctx.notes.signed = (role, owner)
                return ticket
    return None


# --- authenticate -------------------------------------------------------------------------------


def authenticate(ctx: MessageContext) -> None:
    """Pipeline step: is this an agent's mail, and does it prove it?"""
    agent = ctx.services.config.agent(ctx.mail.from_addr)
    if agent is None:
        return
    st = state(ctx.services)
    proof = ""
    if ctx.notes.signed == ("agent", agent.address):
        proof = "signed reply address"
    else:
        method = agent_auth.proof_from_headers(agent_auth.top_authentication_results(ctx.raw), agent.address, st.auth)
        proof = f"{method}=pass" if method else ""
    if not proof:
        ctx.notes.unproven_agent = agent.address
        ctx.notes.unproven_reason = (
            "no signed reply address of this agent and no trusted "
            "Authentication-Results with an aligned dkim=pass or spf=pass"
        )
        return
    automatic = automatic_reason(incoming_from(ctx))
    if automatic:
        # An out-of-office answering a notification: kept, but it neither speaks to the customer nor steers.
        ctx.notes.automatic_agent_mail = automatic
    ctx.notes.agent = agent
    ctx.notes.agent_proof = proof


def agent_of(ctx: MessageContext) -> AgentConfig | None:
    found = ctx.notes.agent
    return found if isinstance(found, AgentConfig) else None


# --- followup -----------------------------------------------------------------------------------


def follow_up(ctx: MessageContext) -> None:
    """Pipeline step: decide which ticket the mail belongs to and what it does there (before the store)."""
    if ctx.notes.bounce is not None:  # a bounce only joins the ticket of the mail that bounced (bounces.py)
        return
    read = reading(ctx)
    agent = agent_of(ctx)
    if agent is not None:
        ctx.notes.author = agent.address
        ctx.notes.new_text = read.answer
        if any(c.word == "fwd" for c in read.commands) and not ctx.notes.automatic_agent_mail:
            _forwarded(ctx, read)
        # In a ticket: "note" until the conversation step relays it ("out"). A mail that opens a
        # ticket (an agent writing to support, or #fwd) is that ticket's request: "in".
        ctx.notes.direction = "in" if ctx.new_ticket else "note"
        if ctx.ticket is not None:
            ctx.ticket = _merged_target(ctx, ctx.ticket)
        return
    ctx.notes.new_text = read.reply.new_text
    ticket = ctx.ticket
    if ticket is None:
        return
    if not may_write(ctx, ticket):
        settings = state(ctx.services).lifecycle
        ctx.notes.stranger = {
            "named_ticket": ticket.number,
            "via": ctx.thread_reason,
            "policy": settings.stranger_policy,
        }
        _new_ticket(ctx)
        return
    proof = customer_proof(ctx, ticket)
    ticket = ctx.ticket = _merged_target(ctx, ticket)
    settings, now = state(ctx.services).lifecycle, ctx.services.clock.now()
    action = lifecycle.followup_action(ticket.status, ticket.resolved_at, now, settings.reopen_days)
    if action == lifecycle.NEW_TICKET:  # a new ticket that references the old one changes nothing in it
        ctx.notes.follows = {"id": ticket.id, "number": ticket.number, "status": ticket.status}
        _new_ticket(ctx)
        return
    if not proof:
        # Stored in the ticket as the sender's message, flagged; it changes nothing (no close, reopen, rating).
        ctx.notes.unproven_sender = ctx.mail.from_addr
        return
    ctx.notes.customer_proof = proof
    from_customer = ctx.mail.from_addr == ticket.customer.address
    if from_customer and ticket.status == "resolved":
        rating = lifecycle.parse_rating(read.reply.new_text)
        if rating is not None:
            ctx.notes.rating = rating
            return
    if from_customer and lifecycle.is_close_request(read.reply.new_text, settings.customer_close_words):
        ctx.notes.customer_close = True
        return
    if action == lifecycle.REOPEN:
        ctx.notes.reopen = True


def _new_ticket(ctx: MessageContext) -> None:
    ctx.ticket, ctx.new_ticket, ctx.thread_reason, ctx.verdict = None, True, "new", "new"


def may_write(ctx: MessageContext, ticket: Ticket) -> bool:
    """The customer, a watcher, a signed reply address, or someone who knows one of its Message-IDs."""
    if ctx.notes.signed or ctx.thread_reason in ("reference", "verp"):  # verp: our signed return path
        return True
    sender = ctx.mail.from_addr
    if sender and sender == ticket.customer.address:
        return True
    watcher = ctx.session.scalar(select(Watcher.id).where(Watcher.ticket_id == ticket.id, Watcher.address == sender))
    return watcher is not None


UNPROVEN_REASON = (
    "not sent to the ticket's signed reply address and no trusted Authentication-Results "
    "with an aligned dkim=pass or spf=pass"
)


def customer_proof(ctx: MessageContext, ticket: Ticket) -> str:
    """How a follow-up proves it speaks for the ticket's people, or "" when it does not.

    A From header is anyone's to write, so a reply changes the ticket (close, reopen, rating) only
    when it came to the customer's signed reply address, which our mails to the customer and the
    watchers carry in Reply-To, or when a trusted Authentication-Results pass is aligned with the
    sender's domain: the same two proofs an agent gives (:mod:`mailgate.domain.agent_auth`).
    """
    signed = ctx.notes.signed
    if isinstance(signed, tuple) and signed[0] == "customer":
        return "signed reply address"
    method = agent_auth.proof_from_headers(
        agent_auth.top_authentication_results(ctx.raw), ctx.mail.from_addr, state(ctx.services).auth
    )
    return f"{method}=pass" if method else ""


def _merged_target(ctx: MessageContext, ticket: Ticket) -> Ticket:
    """A merged ticket's mail goes to the ticket it was merged into."""
    for _ in range(MAX_MERGE_HOPS):
        if ticket.merged_into_id is None:
            break
        target = ctx.session.get(Ticket, ticket.merged_into_id)
        if target is None:
            break
        ctx.notes.merged_from = ctx.notes.merged_from or ticket.number
        ticket = target
    return ticket


# --- #fwd ---------------------------------------------------------------------------------------

_FROM_NAMES = "|".join(re.escape(n) for lang in LANGUAGES for n in lang.header_from)
_FROM_LINE = re.compile(rf"^\s*\*{{0,2}}(?:{_FROM_NAMES})\*{{0,2}}\s?:\*{{0,2}}\s*(.+)$", re.IGNORECASE)
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True)
class Forwarded:
    address: str
    name: str
    text: str


def find_forwarded(mail: parsing.ParsedMail, reply: Reply) -> Forwarded | None:
    """The original sender of a forwarded mail: an attached message, else the From: line of the forward."""
    for item in mail.attachments:
        if item.content_type.lower() == "message/rfc822":
            inner = parsing.parse(item.payload)
            if inner.from_addr:
                return Forwarded(inner.from_addr, inner.from_name, inner.text.strip())
    for block in (reply.forwarded, reply.quoted):
        lines = block.split("\n")
        for i, line in enumerate(lines[:40]):
            match = _FROM_LINE.match(line.lstrip("> "))
            if not match:
                continue
            value = match.group(1).replace("[mailto:", "<").replace("]", ">")
            name, address = parseaddr(value)
            if "@" not in address:
                found = _ADDRESS.search(value)
                address = found.group(0) if found else ""
            if address:
                return Forwarded(address.lower(), name.strip('"'), _body_after_headers(lines[i:]))
    return None


def _body_after_headers(lines: list[str]) -> str:
    for i, line in enumerate(lines):
        if not line.strip():
            return "\n".join(lines[i:]).strip()
    return ""


def _forwarded(ctx: MessageContext, read: Reading) -> None:
    """``#fwd``: the mail opens a new ticket as if the forwarded mail's sender had written it."""
    found = find_forwarded(ctx.mail, read.reply)
    if found is None:
        return  # the #fwd command fails in the conversation step and says why
    ctx.notes.forwarded_by = ctx.mail.from_addr
    ctx.notes.forwarded_sender = found.address
    ctx.notes.new_text = found.text or read.answer
    subject = clean_subject(ctx.mail.subject, ctx.services.config.support.token_prefix)
    ctx.mail = replace(ctx.mail, from_addr=found.address, from_name=found.name, subject=subject, cc=[])
    _new_ticket(ctx)
