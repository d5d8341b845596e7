"""The outbound plugin: acknowledgments, agent notifications, bounces and the sender.

``install(runtime)`` checks the settings and every template (a problem stops
``serve`` with a ConfigError naming file and line), then registers:

- the ``verp`` thread finder (:func:`mailgate.outbound.bounces.find_ticket`), first of all
  finders, so a bounce joins the ticket of the mail that bounced;
- the reactor :func:`react`, run after the store step in the message's
  transaction: it acknowledges a new ticket to its customer, notifies the
  queue's agents of a new ticket, notifies the assignee (else the queue) of a
  customer's reply, and settles bounces;
- the delivery sweep (``[outbound] sweep_interval``) with the scheduler, and an
  ``on_committed`` hook that wakes the sender right after each commit.

``start(runtime, stop)`` is the task that delivers as soon as it is woken.
``reload(runtime)`` (SIGHUP) re-reads the templates; a broken one keeps the old set.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailgate.config import Config
from mailgate.context import MessageContext, Services
from mailgate.ops import scheduler
from mailgate.outbound import attachments as attachments_out
from mailgate.outbound import bounces, sender, templating, transports
from mailgate.outbound import settings as outbound_settings
from mailgate.outbound.loopguard import Incoming, incoming_from
from mailgate.outbound.notices import wake
from mailgate.outbound.outbox import OutboundState, Prepared, prepare, reply_address, state, write
from mailgate.plugins import PLUGINS
from mailgate.storage import audit, keys
from mailgate.storage.models import Message, Ticket

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.outbound")

FILES_COMMAND = "#files"  # an agent's command that mails the ticket's files (mailgate.domain.command_plan)
_AGENT = {"name": "Bob", "address": "bob@example.com"}
_FILES = {
    "attached": ["screenshot.png"],
    "command": FILES_COMMAND,
    "listed": [{"filename": "dump.log", "size": "12.0 MB", "bytes": 12582912, "type": "text/plain", "reason": ""}],
}
for _kind in ("notify_new_ticket", "notify_reply"):
    templating.register_kind(_kind, {"agent": _AGENT, "files": _FILES})


def install(runtime: Runtime) -> None:
    config: Config = runtime.config
    settings = outbound_settings.parse(config, templating.SHIPPED_DIR)
    attachments_out.settings(config)  # [notify] and [relay]: a bad value stops serve
    import_kind_registrations()
    templates = templating.load(settings.template_dirs, check=runtime.check_templates, cache_dir=config.cache_path)
    services = runtime.services
    key = keys.load_key(config, runtime.engine)  # the installation's key, shared through the database
    services.outbound = OutboundState(settings=settings, templates=templates, key=key)
    services.sender = transports.default_sender(config)
    services.thread_finders.insert(0, ("verp", bounces.find_ticket))
    services.reactors.append(react)
    _chain(services, "on_committed", lambda outcomes: wake(runtime.services))
    scheduler.register(runtime, scheduler.Sweep("outbox", settings.outbound.sweep_interval, sender.sweep))


def import_kind_registrations() -> None:
    """Import every plugin module, so the kinds of mail they declare (templating.register_kind) are known
    before the templates are checked, whatever the order of installation."""
    for name in PLUGINS:
        importlib.import_module(name)


def reload(runtime: Runtime) -> None:
    current = state(runtime.services)
    current.templates = templating.load(current.settings.template_dirs, cache_dir=runtime.config.cache_path)
    log.info("templates reloaded", extra={"files": len(current.templates.files())})


async def start(runtime: Runtime, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()
    woken.set()  # deliver what a previous run left behind, at once
    runtime.services.wake_sender = lambda: loop.call_soon_threadsafe(woken.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout=0.5)
        if not woken.is_set():
            continue
        woken.clear()
        try:
            await asyncio.to_thread(sender.sweep, runtime)
        except Exception:
            log.exception("delivery round failed; the sweep tries again")


def _chain(services: Services, name: str, hook: Callable[[Any], None]) -> None:
    previous = getattr(services, name)

    def chained(value: Any) -> None:
        if previous is not None:
            previous(value)
        hook(value)

    setattr(services, name, chained)


def queue_agents(config: Config, queue: str) -> list[str]:
    """The agents a queue notifies (:meth:`mailgate.config.Config.queue_agents`, the one definition)."""
    return config.queue_agents(queue)


def react(ctx: MessageContext) -> None:
    """Reactor: the mail an incoming message causes, queued in its transaction."""
    ticket, message = ctx.ticket, ctx.message
    if ticket is None or message is None:
        return
    note = ctx.notes.bounce
    if note is not None:
        bounces.settle(ctx.session, ctx, note, ticket)
        return
    if message.direction != "in" or ctx.envelope.quiet:
        return
    incoming = incoming_from(ctx)
    if ticket.spam:  # the spam queue is reviewed, not answered and not notified
        if ctx.new_ticket:
            acknowledge(ctx, ticket, message, incoming)  # records why it is held back
        return
    if ctx.new_ticket:
        acknowledge(ctx, ticket, message, incoming)
        notify(ctx, ticket, message, "notify_new_ticket", queue_agents(ctx.services.config, ticket.queue), incoming)
    else:
        targets = [ticket.assignee] if ticket.assignee else queue_agents(ctx.services.config, ticket.queue)
        notify(ctx, ticket, message, "notify_reply", targets, incoming)


def acknowledge(ctx: MessageContext, ticket: Ticket, message: Message, incoming: Incoming) -> None:
    """Tell the customer the ticket number, unless routing or the loop guard says no."""
    customer = ticket.customer
    held = ""
    if ticket.spam or ctx.route.spam:
        held = "ticket is spam"
    elif not ctx.route.auto_reply:
        held = "rules: no auto-reply" + (f" ({', '.join(ctx.route.rules)})" if ctx.route.rules else "")
    if held:
        audit.record(
            ctx.session,
            ctx.services.clock.now(),
            "mail.held",
            ticket=ticket,
            actor="mailgate",
            mail_kind="acknowledgment",
            to=[customer.address],
            reason=held,
            outbox=None,
        )
        return
    _safely(
        ctx,
        ticket,
        "acknowledgment",
        lambda: prepare(
            ctx.session,
            ctx.services,
            ticket=ticket,
            kind=ctx.route.template or "acknowledgment",
            recipients=[(customer.name, customer.address)],
            in_reply_to=message,
            automatic=True,
            incoming=incoming,
            reply_to=reply_address(ctx.services, ticket),
        ),
    )


def notify(
    ctx: MessageContext, ticket: Ticket, message: Message, kind: str, addresses: list[str], incoming: Incoming
) -> None:
    """One notification per agent (never to the person who wrote the mail), with the customer's files."""
    config = ctx.services.config
    attached, listed = attachments_out.for_agents(ctx.services, ctx.session, message)
    files = {
        "attached": [a.filename for a in attached],
        "listed": [item.as_context() for item in listed],
        "command": FILES_COMMAND,
    }
    for address in addresses:
        if address == incoming.sender:
            continue
        agent = config.agent(address)
        name = agent.name if agent else ""
        _safely(
            ctx,
            ticket,
            kind,
            functools.partial(
                prepare,
                ctx.session,
                ctx.services,
                ticket=ticket,
                kind=kind,
                recipients=[(name, address)],
                in_reply_to=message,
                automatic=True,
                incoming=incoming,
                reply_to=reply_address(ctx.services, ticket, address),
                context={"agent": {"name": name, "address": address}, "files": files},
                attachments=attached,
            ),
        )


def _safely(ctx: MessageContext, ticket: Ticket, kind: str, make: Callable[[], Prepared | None]) -> None:
    """A mail that cannot be made must not cost the customer's message its place in the ticket.

    ``make`` is :func:`mailgate.outbound.outbox.prepare`, which writes nothing before everything that
    can fail on the mail itself (template, bytes, loop guard) is done; so no savepoint is needed (two
    statements a mail, and a round trip each on PostgreSQL). What :func:`write` then does can fail only
    in the database, which fails the whole mail as a failed row of its own would.
    """
    try:
        made = make()
    except Exception as exc:
        log.exception(
            "automatic mail failed; the message is stored without it", extra={"kind": kind, "ticket": ticket.number}
        )
        audit.record(
            ctx.session,
            ctx.services.clock.now(),
            "mail.held",
            ticket=ticket,
            actor="mailgate",
            mail_kind=kind,
            to=[],
            reason=f"error: {type(exc).__name__}: {exc}"[:500],
            outbox=None,
        )
        return
    if made is not None:
        write(ctx.session, ctx.services, made)
