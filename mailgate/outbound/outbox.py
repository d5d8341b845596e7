"""The outbox: every mail mailgate sends is a row, written in the transaction of the change that caused it.

:func:`enqueue` is the one way to send mail. It renders the template, builds
the bytes, asks the loop guard (for automatic mail), and writes an ``Outbox``
row; the sender delivers it after the commit. It is :func:`prepare` (all that
can fail on the mail itself, nothing written) then :func:`write`, which the
pipeline's reactor calls apart so that a mail that cannot be made needs no
savepoint to leave the customer's message stored. So a mail exists exactly when
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from mailgate.config import Config
from mailgate.context import Services, installed
from mailgate.mail import compose
from mailgate.mail.sameness import content_digest, dedupe_key
from mailgate.outbound import loopguard, making
from mailgate.outbound.bounces import verp_address
from mailgate.outbound.making import Recipient
from mailgate.outbound.settings import Settings
from mailgate.outbound.templating import DEFAULT_LOCALE, Templates
from mailgate.storage import audit, direct, rows
from mailgate.storage.models import Event, Message, Outbox, Ticket
from mailgate.storage.rows import insert_now, table
from mailgate.storage.threads import remember_message_id

log = logging.getLogger("mailgate.outbox")

P = ParamSpec("P")


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


@dataclass(frozen=True)
class Prepared:
    """A mail made and judged by :func:`prepare`, not written yet: what :func:`write` needs."""

    ticket: Ticket | None
    kind: str
    now: datetime
    targets: list[tuple[str, str]]
    addresses: list[str]
    made: making.Made
    automatic: bool
    store: bool  # a Message row in the thread too (a person's mail)
    author: str
    message_pk: int | None
    reason: str  # why the loop guard holds it back; "" to send
    breaker_count: int | None  # the system count, when the breaker tripped on this mail
    row_id: int | None = None  # its outbox row's id, taken with the loop guard's counts (PostgreSQL)


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
    """Make one mail of ``kind`` to ``recipients`` and ask the loop guard; None when it cannot be made.

    Everything that can fail on the mail itself happens here, before anything of it is written: it
    reads the outbox and writes only the ``mail.held`` event of a mail that cannot be made.
    ``in_reply_to`` is the stored message this mail answers (threading headers
    and the template's ``message``); ``incoming`` the facts of the mail that
    caused an automatic mail (the loop guard's header rules apply when the mail
    goes back to its sender). ``cc`` get the mail too, named in a visible Cc
    as a reply-all would (the watchers of a relayed answer). ``attachments``
    travel with the mail (mailgate.outbound.attachments chooses them). ``message_pk``: the stored
    message this mail is (an agent's relayed answer).
    """
    config, now, st = services.config, services.clock.now(), state(services)
    targets = making.recipients(recipients)
    if not targets:
        return None
    copies = [(name, addr) for name, addr in making.recipients(cc) if addr not in {a for _, a in targets}]
    locale = locale or queue_locale(config, ticket.queue if ticket else "", ticket.locale if ticket else "")
    wanted = making.Wanted(
        ticket=ticket,
        kind=kind,
        targets=targets,
        copies=copies,
        locale=locale,
        reply_to=reply_to or "",
        answer_address=reply_to or reply_address(services, ticket),
        context=context,
        in_reply_to=in_reply_to,
        automatic=automatic,
        sender_name=sender_name,
        attachments=attachments,
    )
    try:
        made = making.make(services, st.templates, wanted, now)
    except making.Unmade as exc:
        _held_event(session, now, ticket, kind, targets, str(exc), None)
        return None
    reason, breaker_count, row_id = "", None, None
    addresses = [addr for _, addr in targets + copies]
    if automatic:
        answering = incoming.sender if incoming is not None and incoming.sender in addresses else None
        limits = st.settings.loop
        ticket_id = ticket.id if ticket else None
        counts = loopguard.gather_counts(
            session, now, recipients=addresses, sender=answering, ticket_id=ticket_id, limits=limits, take_row_id=True
        )
        row_id = counts.row_id
        allowed, reason = loopguard.may_auto_reply(
            recipients=addresses,
            incoming=incoming,
            counts=counts,
            limits=limits,
            is_ours=lambda a: is_ours(config, a, st),
        )
        if not allowed and reason.startswith(loopguard.BREAKER):
            breaker_count = counts.system_in_window
    store = not reason and ticket is not None and (store_message if store_message is not None else not automatic)
    return Prepared(
        ticket, kind, now, targets, addresses, made, automatic, store, author, message_pk, reason, breaker_count, row_id
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
        stored = _store(session, services, ticket, mail.made, mail.kind, mail.author)
        message_pk = stored.id
    row = _write_row(
        session,
        st.key,
        config.support.address,
        rows.new(
            Outbox,
            ticket_id=ticket.id if ticket else None,
            message_pk=message_pk,
            kind=mail.kind,
            message_id=mail.made.outgoing.message_id,
            mail_from="",
            rcpt_tos=mail.addresses,
            raw=mail.made.raw,
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
        mail.row_id,
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
        remember_message_id(session, mail.made.outgoing.message_id, ticket, stored, new=True)
    return row


def _then_write(
    make: Callable[Concatenate[Session, Services, P], Prepared | None],
) -> Callable[Concatenate[Session, Services, P], Outbox | None]:
    def enqueue(session: Session, services: Services, /, *args: P.args, **kwargs: P.kwargs) -> Outbox | None:
        prepared = make(session, services, *args, **kwargs)
        return None if prepared is None else write(session, services, prepared)

    enqueue.__doc__ = """Queue one mail (:func:`prepare`'s arguments): its outbox row, written at once; None when it is
    held back (the event says why). A caller that must outlive a mail that cannot be made (the pipeline's
    reactor) calls :func:`prepare` and :func:`write` apart instead."""
    return enqueue


enqueue = _then_write(prepare)


_SET_MAIL_FROM = update(table(Outbox)).where(Outbox.id == bindparam("row")).values(mail_from=bindparam("verp"))


def _write_row(session: Session, key: bytes, support_address: str, row: Outbox, row_id: int | None) -> Outbox:
    """Write the outbox row at once (mailgate.storage.rows.insert_now) and return it, a loaded object.

    Its return path is a VERP address of its own id: with ``row_id`` taken before, the row is written
    whole; else the id comes back from the INSERT, then the path is set by one UPDATE (not left to a flush).
    """
    if row_id is not None:
        row.mail_from = verp_address(key, support_address, row_id)
        insert_now(session, row, new_id=row_id)
        return row
    insert_now(session, row)
    verp = verp_address(key, support_address, row.id)
    direct.write(session, _SET_MAIL_FROM, {"row": row.id, "verp": verp})
    set_committed_value(row, "mail_from", verp)
    return row


def is_ours(config: Config, address: str, st: OutboundState | None = None) -> bool:
    """One of our own addresses: what we accept mail for, or the admin address."""
    address = address.strip().strip("<>").lower()
    return config.support.accepts(address) or bool(st and address == st.settings.outbound.admin_address)


def _store(session: Session, services: Services, ticket: Ticket, made: making.Made, kind: str, author: str) -> Message:
    mail, text, html, raw = made.outgoing, made.text, made.html, made.raw
    with services.blobs.batch(session):  # the blob commits with this mail's rows (the worker's batch, or ours)
        sha = services.blobs.put(raw)
    digest = content_digest(raw)
    message = rows.new(
        Message,
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


def _remember_trip(session: Session, at: datetime) -> None:
    """Remember a trip for the rest of this transaction; not inside a savepoint, whose rollback would take
    the event with it and leave the memory of it behind (a new transaction, or a rollback, forgets it)."""
    if not session.in_nested_transaction():
        session.info[_BREAKER_SEEN] = (session.get_transaction(), at)


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


_BREAKER_SEEN = "outbox.breaker_seen"  # Session.info: (its transaction, when the breaker last tripped)
_LAST_TRIPPED = select(func.max(Event.created_at)).where(
    Event.kind == "loop.breaker_tripped", Event.created_at > bindparam("since")
)


def trip_breaker(session: Session, services: Services, now: datetime, count: int) -> None:
    """The system-wide window is full: record it and alert the admin, once per window.

    While it stays full every automatic mail is held and comes here; the trip this transaction has
    seen is remembered, so a batch of held mail looks it up once, not once a mail.
    """
    limits = state(services).settings.loop
    since = now - timedelta(seconds=limits.system_window)
    seen = session.info.get(_BREAKER_SEEN)
    if seen is not None and seen[0] is session.get_transaction() and seen[1] > since:
        return
    already = session.scalar(_LAST_TRIPPED, {"since": since})
    if already is not None:
        _remember_trip(session, already)
        return
    detail: dict[str, Any] = {"count": count, "limit": limits.system_limit, "window": limits.system_window}
    audit.record(session, now, "loop.breaker_tripped", actor="mailgate", **detail)
    admin = state(services).settings.outbound.admin_address
    log.error(
        "circuit breaker tripped: automatic mail is held back until the window clears",
        extra={"count": count, "limit": limits.system_limit, "admin": admin or "(none)"},
    )
    _remember_trip(session, now)
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
