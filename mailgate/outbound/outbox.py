"""The outbox: every mail mailgate sends is a row, written in the transaction of the change that caused it.

:func:`enqueue` is the one way to send mail. It renders the template, builds
the bytes, asks the loop guard (for automatic mail), and writes an ``Outbox``
row; the sender delivers it after the commit. So a mail exists exactly when
the change that caused it was committed: a rollback takes the mail with it,
and a crash after the commit leaves a row the sender finds on restart.

What enqueue writes besides the row:

- the mail's Message-ID in the threading index (``followup.remember_message_id``),
  so a reply to any mail we sent joins its ticket;
- for mail a person wrote (``automatic=False``, e.g. a relayed agent reply), a
  ``Message`` row with direction ``out`` in the ticket's thread; automatic mail
  (acknowledgments, notifications) stays out of the conversation and is seen in
  ``mailgate outbox list``;
- when the loop guard holds the mail back: the row with status ``held`` and the
  reason in ``last_error``, and a ``mail.held`` event on the ticket; enqueue
  then returns None. ``mailgate outbox retry ID`` sends a held mail anyway.

After committing, a caller outside the pipeline calls
``services.wake_sender()`` (when present) so the mail leaves at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from mailgate.config import Config
from mailgate.context import Services, installed
from mailgate.domain.tokens import subject_with_token
from mailgate.mail import compose
from mailgate.mail.sameness import content_digest, dedupe_key
from mailgate.outbound import loopguard
from mailgate.outbound.bounces import verp_address
from mailgate.outbound.settings import Settings
from mailgate.outbound.template_context import build_context
from mailgate.outbound.templating import DEFAULT_LOCALE, Templates
from mailgate.storage import audit
from mailgate.storage.models import Event, Message, Outbox, Ticket
from mailgate.storage.rows import insert_now, table
from mailgate.storage.threads import remember_message_id

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


def auto_submitted(kind: str, automatic: bool) -> str:
    """The Auto-Submitted value of a mail: by kind, else auto-generated for any automatic mail."""
    return AUTO_SUBMITTED.get(kind, "auto-generated" if automatic else "")


Recipient = str | tuple[str, str]  # "addr" or ("Display Name", "addr")


@dataclass
class OutboundState:
    """What the outbound plugin keeps in ``services.outbound``."""

    settings: Settings
    templates: Templates
    key: bytes  # signs VERP return paths


def state(services: Services) -> OutboundState:
    return installed(services.outbound, "mailgate.outbound.plugin")


def queue_locale(config: Config, queue: str, ticket_locale: str = "") -> str:
    """The locale of a ticket's mail: the ticket's (chosen when it opened, mailgate.mail.language), else the
    queue's [[queues]] locale, else [support] locale, else en."""
    configured = config.queue(queue)
    return ticket_locale or (configured.locale if configured else "") or config.support.locale or DEFAULT_LOCALE


def reply_address(services: Services, ticket: Ticket | None, agent: str | None = None) -> str:
    """Where a reply to our mail should go so that it threads into ``ticket``.

    A signed address of one person (:func:`mailgate.domain.agent_auth.reply_address`):
    ``agent``'s own for a notification to an agent (a reply to it proves the
    agent, see mailgate/manual/agents.md), else the ticket customer's. Without a ticket,
    the support address.
    """
    if ticket is None:
        return services.config.support.address
    from mailgate.domain import agent_auth

    role, owner = ("agent", agent) if agent else ("customer", ticket.customer.address)
    return agent_auth.reply_address(state(services).key, services.config.support.address, ticket.number, role, owner)


def _recipients(recipients: Sequence[Recipient]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for item in recipients:
        name, addr = item if isinstance(item, tuple) else ("", item)
        addr = addr.strip().strip("<>").lower()
        if addr and addr not in seen:
            seen[addr] = name
    return [(name, addr) for addr, name in seen.items()]


def enqueue(
    session: Session,
    services: Services,
    *,
    ticket: Ticket | None,
    kind: str,
    recipients: Sequence[Recipient],
    context: dict[str, Any] | None = None,
    in_reply_to: Message | None = None,
    automatic: bool = True,
    reply_to: str | None = None,
    sender_name: str | None = None,
    locale: str | None = None,
    incoming: loopguard.Incoming | None = None,
    store_message: bool | None = None,
    author: str = "",
    cc: Sequence[Recipient] = (),
    attachments: Sequence[compose.OutAttachment] = (),
    message_pk: int | None = None,
) -> Outbox | None:
    """Queue one mail of ``kind`` to ``recipients``; None when it is held back (the event says why).

    ``in_reply_to`` is the stored message this mail answers (threading headers
    and the template's ``message``); ``incoming`` the facts of the mail that
    caused an automatic mail (the loop guard's header rules apply when the mail
    goes back to its sender). ``cc`` get the mail too, named in a visible Cc
    as a reply-all would (the watchers of a relayed answer). ``attachments``
    travel with the mail (mailgate.outbound.attachments chooses them). ``message_pk``: the stored
    message this mail is (an agent's relayed answer). The row is written at once (:func:`_write_row`).

    It is :func:`prepare` then :func:`write`; a caller that must survive a mail that cannot be made
    (the pipeline's reactor) calls them apart, since only the first can fail on the mail itself.
    """
    prepared = prepare(
        session,
        services,
        ticket=ticket,
        kind=kind,
        recipients=recipients,
        context=context,
        in_reply_to=in_reply_to,
        automatic=automatic,
        reply_to=reply_to,
        sender_name=sender_name,
        locale=locale,
        incoming=incoming,
        store_message=store_message,
        author=author,
        cc=cc,
        attachments=attachments,
        message_pk=message_pk,
    )
    return None if prepared is None else write(session, services, prepared)


@dataclass(frozen=True)
class Prepared:
    """A mail made and judged by :func:`prepare`, not written yet: what :func:`write` needs."""

    ticket: Ticket | None
    kind: str
    now: datetime
    targets: list[tuple[str, str]]
    addresses: list[str]
    outgoing: compose.Outgoing
    raw: bytes
    text: str
    html: str
    automatic: bool
    store: bool  # a Message row in the thread too (a person's mail)
    author: str
    message_pk: int | None
    reason: str  # why the loop guard holds it back; "" to send
    breaker_count: int | None  # the system count, when the breaker tripped on this mail


def prepare(
    session: Session,
    services: Services,
    *,
    ticket: Ticket | None,
    kind: str,
    recipients: Sequence[Recipient],
    context: dict[str, Any] | None = None,
    in_reply_to: Message | None = None,
    automatic: bool = True,
    reply_to: str | None = None,
    sender_name: str | None = None,
    locale: str | None = None,
    incoming: loopguard.Incoming | None = None,
    store_message: bool | None = None,
    author: str = "",
    cc: Sequence[Recipient] = (),
    attachments: Sequence[compose.OutAttachment] = (),
    message_pk: int | None = None,
) -> Prepared | None:
    """Render, compose and ask the loop guard (:func:`enqueue`'s arguments): everything that can fail on
    the mail itself, before anything of it is written. It reads the outbox and writes nothing, except
    the ``mail.held`` event of a template that fails or bytes that cannot be built (then None)."""
    config, now, st = services.config, services.clock.now(), state(services)
    targets = _recipients(recipients)
    if not targets:
        return None
    copies = [(name, addr) for name, addr in _recipients(cc) if addr not in {a for _, a in targets}]
    locale = locale or queue_locale(config, ticket.queue if ticket else "", ticket.locale if ticket else "")
    answer_to = reply_to or ""
    data = build_context(
        services,
        ticket=ticket,
        message=in_reply_to,
        locale=locale,
        reply_to=answer_to or reply_address(services, ticket),
        extra=context,
    )
    try:
        rendered = st.templates.render(kind, locale, data, queue=ticket.queue if ticket else "")
    except TemplateError as exc:
        log.error("template failed; mail not written", extra={"kind": kind, "error": str(exc)})
        _held_event(session, now, ticket, kind, targets, f"template error: {type(exc).__name__}: {exc}", None)
        return None
    subject = rendered.subject or (ticket.subject if ticket else kind)
    if ticket is not None:
        subject = subject_with_token(subject, ticket.number, config.support.token_prefix)
    parent_id, references = "", list[str]()
    if in_reply_to is not None:
        parent_id, references = compose.thread_headers(in_reply_to.message_id, in_reply_to.references)
    outgoing = compose.Outgoing(
        from_addr=config.support.address,
        from_name=sender_name or config.support.name,
        to=targets,
        subject=subject,
        text=rendered.text,
        html=rendered.html,
        date=now,
        message_id=compose.new_message_id(config.hostname),
        in_reply_to=parent_id,
        references=references,
        reply_to=answer_to,
        reply_to_name=config.support.name if answer_to else "",
        auto_submitted=auto_submitted(kind, automatic),
        loop_marker=config.support.address,
        cc=copies,
        attachments=tuple(attachments),
    )
    try:
        raw = compose.compose(outgoing)
    except ValueError as exc:
        _held_event(session, now, ticket, kind, targets, str(exc), None)
        return None

    reason, breaker_count = "", None
    addresses = [addr for _, addr in targets + copies]
    if automatic:
        answering = incoming.sender if incoming is not None and incoming.sender in addresses else None
        counts = loopguard.gather_counts(
            session,
            now,
            recipients=addresses,
            sender=answering,
            ticket_id=ticket.id if ticket else None,
            limits=st.settings.loop,
        )
        allowed, reason = loopguard.may_auto_reply(
            recipients=addresses,
            incoming=incoming,
            counts=counts,
            limits=st.settings.loop,
            is_ours=lambda a: is_ours(config, a, st),
        )
        if not allowed and reason.startswith(loopguard.BREAKER):
            breaker_count = counts.system_in_window
    return Prepared(
        ticket=ticket,
        kind=kind,
        now=now,
        targets=targets,
        addresses=addresses,
        outgoing=outgoing,
        raw=raw,
        text=rendered.text,
        html=rendered.html,
        automatic=automatic,
        store=not reason and ticket is not None and (store_message if store_message is not None else not automatic),
        author=author,
        message_pk=message_pk,
        reason=reason,
        breaker_count=breaker_count,
    )


def write(session: Session, services: Services, mail: Prepared) -> Outbox | None:
    """Write a prepared mail: its outbox row, its index entry (or why it is held), its message if a person's.

    Only the database can fail here, and then the whole change fails with it, as any of its rows would.
    """
    config, st, ticket, now = services.config, state(services), mail.ticket, mail.now
    if mail.breaker_count is not None:
        trip_breaker(session, services, now, mail.breaker_count)
    message_pk, stored = mail.message_pk, None
    if mail.store and ticket is not None:
        stored = _store(
            session, services, ticket, mail.outgoing, mail.text, mail.html, mail.raw, mail.kind, mail.author
        )
        message_pk = stored.id
    row = _write_row(
        session,
        st.key,
        config.support.address,
        Outbox(
            ticket_id=ticket.id if ticket else None,
            message_pk=message_pk,
            kind=mail.kind,
            message_id=mail.outgoing.message_id,
            mail_from="",
            rcpt_tos=mail.addresses,
            raw=mail.raw,
            status="held" if mail.reason else "pending",
            attempts=0,
            next_attempt_at=now,
            claimed_until=None,
            last_error=mail.reason,
            created_at=now,
            sent_at=None,
            automatic=mail.automatic,
            recipient=mail.addresses[0],
        ),
    )
    if mail.reason:
        log.info(
            "automatic mail held back",
            extra={
                "kind": mail.kind,
                "to": ",".join(mail.addresses),
                "reason": mail.reason,
                "ticket": ticket.number if ticket else "",
                "outbox": row.id,
            },
        )
        _held_event(session, now, ticket, mail.kind, mail.targets, mail.reason, row.id)
        return None
    if ticket is not None:
        remember_message_id(session, mail.outgoing.message_id, ticket, stored, new=True)
    return row


_SET_MAIL_FROM = update(table(Outbox)).where(Outbox.id == bindparam("row")).values(mail_from=bindparam("verp"))


def _write_row(session: Session, key: bytes, support_address: str, row: Outbox) -> Outbox:
    """Write the outbox row at once (mailgate.storage.rows.insert_now) and return it, a loaded object.

    Its return path is a VERP address of its own id, so the id is taken first, then the path set by
    one UPDATE (not left to a flush).
    """
    insert_now(session, row)
    verp = verp_address(key, support_address, row.id)
    session.connection().execute(_SET_MAIL_FROM, {"row": row.id, "verp": verp})
    set_committed_value(row, "mail_from", verp)
    return row


def is_ours(config: Config, address: str, st: OutboundState | None = None) -> bool:
    """One of our own addresses: what we accept mail for, or the admin address."""
    address = address.strip().strip("<>").lower()
    return config.support.accepts(address) or bool(st and address == st.settings.outbound.admin_address)


def _store(
    session: Session,
    services: Services,
    ticket: Ticket,
    mail: compose.Outgoing,
    text: str,
    html: str,
    raw: bytes,
    kind: str,
    author: str,
) -> Message:
    sha, digest = services.blobs.put(raw), content_digest(raw)
    message = Message(
        ticket_id=ticket.id,
        direction="out",
        content_sha256=digest,
        dedupe_key=dedupe_key(mail.message_id, sha, mail.from_addr, digest),
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=" ".join(mail.references),
        from_addr=mail.from_addr,
        from_name=mail.from_name,
        to_addrs=[a for _, a in mail.to],
        cc_addrs=[a for _, a in mail.cc],
        subject=mail.subject,
        date=mail.date,
        text=text,
        html=html,
        new_text=text,
        raw_sha256=sha,
        size=len(raw),
        source=kind[:20],
        author=author,
        parse_defects=[],
        created_at=mail.date,
    )
    insert_now(session, message)
    return message


def _held_event(
    session: Session,
    now: datetime,
    ticket: Ticket | None,
    kind: str,
    targets: Sequence[tuple[str, str]],
    reason: str,
    outbox_id: int | None,
) -> None:
    audit.record(
        session,
        now,
        "mail.held",
        ticket=ticket,
        actor="mailgate",
        mail_kind=kind,
        to=[addr for _, addr in targets],
        reason=reason,
        outbox=outbox_id,
    )


def trip_breaker(session: Session, services: Services, now: datetime, count: int) -> None:
    """The system-wide window is full: record it and alert the admin, once per window."""
    limits = state(services).settings.loop
    since = now - timedelta(seconds=limits.system_window)
    already = session.scalar(
        select(Event.id).where(Event.kind == "loop.breaker_tripped", Event.created_at > since).limit(1)
    )
    if already is not None:
        return
    audit.record(
        session,
        now,
        "loop.breaker_tripped",
        actor="mailgate",
        count=count,
        limit=limits.system_limit,
        window=limits.system_window,
    )
    admin = state(services).settings.outbound.admin_address
    log.error(
        "circuit breaker tripped: automatic mail is held back until the window clears",
        extra={"count": count, "limit": limits.system_limit, "admin": admin or "(none)"},
    )
    if admin:
        window = loopguard.span(limits.system_window)
        enqueue(
            session,
            services,
            ticket=None,
            kind="loop_alert",
            recipients=[admin],
            automatic=False,
            store_message=False,
            context={
                "alert": {"count": count, "limit": limits.system_limit, "window": window, "since": now.isoformat()}
            },
        )
