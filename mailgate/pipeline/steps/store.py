"""The store step: customer, ticket, message, attachments, raw blob, audit events.

Blobs are written before the rows that name them are inserted (and fsynced
before the batch commits), so a committed row never points at a missing blob.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import NamedTuple

import magic
from sqlalchemy import bindparam, func, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from mailgate.context import MessageContext, Services, sender_address
from mailgate.mail import language as locale_detect
from mailgate.outbound import templating
from mailgate.pipeline.steps import watchers
from mailgate.storage import audit, direct, rows
from mailgate.storage.models import Attachment, Counter, Customer, Message, Ticket
from mailgate.storage.rows import insert_now, loaded, next_ids, table
from mailgate.storage.threads import remember_message_id

log = logging.getLogger("mailgate.store")

UNPROVEN_FLAG = "unproven sender"  # on Message.parse_defects: the mail was stored but could not act (docs/security.md)


_NEXT_NUMBER = update(Counter).where(Counter.name == "ticket").values(value=Counter.value + 1)
_NUMBER = select(Counter.value).where(Counter.name == "ticket")  # read after the UPDATE (see next_ticket_number)
_NEXT_NUMBER_PG = select(func.nextval("ticket_numbers"))  # migration 0008: no lock held to the commit
_CUSTOMER = select(*table(Customer).columns).where(table(Customer).c.address == bindparam("address"))


def next_ticket_number(session: Session) -> int:
    """Take the next number, safe with several worker processes and daemons.

    On PostgreSQL from the ``ticket_numbers`` sequence: the counter row's lock would last until the batch
    commits, so the batches of two workers that each open a ticket would take turns. A number taken in a
    transaction that rolls back is not given again. On SQLite, whose one writer holds the whole file
    anyway, the ``counters`` row, raised and read back in two statements: an UPDATE … RETURNING would
    run in a statement savepoint, at which FTS5 writes out the batch's pending terms
    (migration 0009). Core statements: through the session, an UPDATE of a mapped class also
    looks for the objects it changes among the loaded ones, which costs more than the statement here.
    """
    return _new_ticket_reads(session, None).number


class _NewTicket(NamedTuple):
    number: int
    customer: Customer | None  # None: not known (or not looked up)
    ticket_id: int | None = None  # PostgreSQL: the ids of the ticket's and its first mail's rows
    message_id: int | None = None


_NEW_IDS = {True: next_ids(Ticket, Message), False: next_ids(Ticket)}


def _new_ticket_reads(session: Session, address: str | None, message_id: int | None = None) -> _NewTicket:
    """What a new ticket reads before its rows: the next number and, with ``address``, that customer if
    known. On PostgreSQL in one round trip with the writes still queued, which also takes the ids of the
    ticket's row and (unless dedupe took it: ``message_id``) the mail's, so those go out without RETURNING,
    with the next statement."""
    connection = session.connection()
    lookup = [(_CUSTOMER, {"address": address})] if address is not None else []
    ids: tuple[int | None, int | None] = (None, None)
    if connection.dialect.name == "postgresql":
        take: list[tuple[direct.Query, dict[str, str]]] = []
        if address is not None:
            take.append((_NEW_IDS[message_id is None], {}))
        [[(number,)], *found] = direct.read_many(connection, [(_NEXT_NUMBER_PG, {}), *lookup, *take])
        if take:
            *found, [taken] = found
            ids = (taken[0], taken[1] if message_id is None else message_id)
    else:
        direct.write(connection, _NEXT_NUMBER, {})
        [[(number,)], *found] = direct.read_many(connection, [(_NUMBER, {}), *lookup])
    customers = found[0] if found else []
    customer = loaded(session, Customer, customers[0]) if customers else None
    return _NewTicket(int(number), customer, *ids)


def get_or_create_customer(
    session: Session, address: str, name: str, now: datetime, *, read: tuple[Customer | None] | None = None
) -> Customer:
    """``read``: the address was looked up already, with this answer (see :func:`_new_ticket_reads`)."""
    [customer] = read if read is not None else (_customer(session, address),)
    if customer is None:
        customer = rows.new(Customer, address=address, name=name, created_at=now)
        if not insert_now(session, customer, unique="address"):
            # another worker's batch added this address meanwhile, and has committed it
            customer = _customer(session, address)
            assert customer is not None, "an address that conflicted is there"
    if name and not customer.name:
        customer.name = name
    return customer


def _customer(session: Session, address: str) -> Customer | None:
    found = direct.read(session, _CUSTOMER, {"address": address})
    return loaded(session, Customer, found[0]) if found else None


def ticket_locale(ctx: MessageContext, queue: str) -> str:
    """The language of the new ticket's mail: rule, Content-Language, the text's language, the queue's.

    Chosen here, so the ticket's row is written once with it.
    """
    config = ctx.services.config
    configured = config.queue(queue)
    fallback = (configured.locale if configured else "") or config.support.locale or templating.DEFAULT_LOCALE
    return locale_detect.choose(
        rule=ctx.route.locale,
        content_language=ctx.mail.header("content-language"),
        text=ctx.notes.new_text or ctx.mail.text,
        fallback=fallback,
        known=known_locales(ctx.services),
    )


def known_locales(services: Services) -> frozenset[str]:
    """The locales there are templates for (read once per set of template folders)."""
    outbound = services.outbound
    directories = tuple(outbound.settings.template_dirs) if outbound is not None else (templating.SHIPPED_DIR,)
    return locale_detect.available(directories)


def store(ctx: MessageContext) -> None:
    """Pipeline step."""
    session, mail, now = ctx.session, ctx.mail, ctx.services.clock.now()
    blobs = ctx.services.blobs
    ctx.raw_sha256 = blobs.put(ctx.raw)  # idempotent: a blob stored already costs one lookup, as a check would
    address = sender_address(ctx)

    ticket = ctx.ticket
    if ticket is None:
        new = _new_ticket_reads(session, address, ctx.notes.message_row_id)
        number, message_id = new.number, new.message_id
        customer = get_or_create_customer(session, address, mail.from_name, now, read=(new.customer,))
        route = ctx.route
        queue = route.queue or ctx.services.config.support.default_queue
        ticket = rows.new(
            Ticket,
            number=number,
            subject=mail.subject,
            status="new",
            queue=queue,
            priority=route.priority,
            tags=list(route.tags),
            spam=route.spam,
            assignee=route.assignee,
            locale=ticket_locale(ctx, queue),
            customer_id=customer.id,
            created_at=now,
            updated_at=now,
        )
        insert_now(session, ticket, new_id=new.ticket_id)
        set_committed_value(ticket, "customer", customer)
        set_committed_value(ticket, "messages", [])
        ctx.ticket, ctx.new_ticket = ticket, True
    else:
        ticket.updated_at = now
        message_id = ctx.notes.message_row_id

    message = _message(ctx, ticket, address, now, message_id)
    ctx.message = message
    _record(ctx, session, ticket, message, address, now)
    if ctx.new_ticket:
        _add_first_watchers(ctx, ticket)


def _message(ctx: MessageContext, ticket: Ticket, address: str, now: datetime, new_id: int | None) -> Message:
    """The mail's row and its attachments' rows, written at once (mailgate.storage.rows.insert_now;
    ``new_id``: its id, taken beforehand).

    Linked to the ticket as loaded values, so later steps read the list of files without a query.
    """
    session, mail, blobs = ctx.session, ctx.mail, ctx.services.blobs
    message = rows.new(
        Message,
        ticket_id=ticket.id,
        direction=ctx.notes.direction,
        dedupe_key=ctx.dedupe_key,
        message_id=mail.message_id,
        content_sha256=ctx.content_sha256,
        in_reply_to=" ".join(mail.in_reply_to),
        references=" ".join(mail.references),
        from_addr=address,
        from_name=mail.from_name,
        to_addrs=mail.to,
        cc_addrs=mail.cc,
        subject=mail.subject,
        date=mail.date,
        text=mail.text,
        html=mail.html,
        new_text=mail.text if ctx.notes.new_text is None else ctx.notes.new_text,
        raw_sha256=ctx.raw_sha256,
        size=len(ctx.raw),
        source=ctx.envelope.source,
        author=ctx.notes.author,
        parse_defects=mail.defects[:50] + ([UNPROVEN_FLAG] if ctx.notes.unproven_sender else []),
        created_at=now,
    )
    insert_now(session, message, new_id=new_id)
    files = []
    for item in mail.attachments:
        attachment = rows.new(
            Attachment,
            message_pk=message.id,
            filename=item.filename,
            content_type=item.content_type,
            sniffed_type=sniff(item.payload),
            size=len(item.payload),
            sha256=blobs.put(item.payload),
            content_id=item.content_id,
            inline=item.inline,
            part_of=item.part_of,
        )
        insert_now(session, attachment)
        set_committed_value(attachment, "message", message)
        files.append(attachment)
    set_committed_value(message, "attachments", files)
    set_committed_value(message, "ticket", ticket)
    loaded = inspect(ticket).attrs.messages.loaded_value
    if isinstance(loaded, list):  # a list already read stays true; else it is read when asked for
        set_committed_value(ticket, "messages", [*loaded, message])
    return message


def _record(
    ctx: MessageContext, session: Session, ticket: Ticket, message: Message, address: str, now: datetime
) -> None:
    """The mail's entry in the Message-ID index and its events, once its rows exist."""
    mail = ctx.mail
    # Looked up by dedupe a moment ago when it was absent: nothing of this mail's can have added it since.
    remember_message_id(session, mail.message_id, ticket, message, new=ctx.notes.message_id_indexed is False)
    events = []
    if ctx.new_ticket:
        created = {"queue": ticket.queue, "priority": ticket.priority, "rules": ctx.route.rules}
        events.append(audit.Pending("ticket.created", ticket, None, address, created | {"source": ctx.envelope.source}))
    received = {
        "message_id": mail.message_id,
        "via": ctx.thread_reason or "new",
        "source": ctx.envelope.source,
        "defects": len(mail.defects),
    }
    events.append(audit.Pending("message.received", ticket, message, address, received))
    collision = ctx.notes.message_id_collision
    if collision:  # a different mail with a Message-ID we know: stored, and said so
        first = {"first_ticket_id": collision["ticket_id"], "first_message_pk": collision["message_pk"]}
        events.append(
            audit.Pending("message.id_collision", ticket, message, address, {"message_id": mail.message_id, **first})
        )
    audit.record_all(session, now, events)


def _add_first_watchers(ctx: MessageContext, ticket: Ticket) -> None:
    """People in Cc of a customer's first mail follow the ticket (not our own addresses), up to the limits."""
    support = ctx.services.config.support
    wanted = [a for a in ctx.mail.cc if not support.accepts(a)]
    if not wanted:
        return
    added, left = watchers.add(
        ctx.session,
        ticket,
        wanted,
        max_total=support.max_watchers,
        max_new=support.max_new_watchers,
        new_ticket=True,
    )
    if left:
        audit.record(
            ctx.session,
            ctx.services.clock.now(),
            "watchers.limited",
            ticket=ticket,
            message=ctx.message,
            actor=ticket.customer.address,
            added=len(added),
            left_out=left,
            max_new_watchers=support.max_new_watchers,
            max_watchers=support.max_watchers,
        )


def sniff(payload: bytes) -> str:
    """The type the bytes really are (libmagic), to show beside the declared one."""
    try:
        return str(magic.from_buffer(payload[:65536], mime=True))[:255]
    except Exception:  # libmagic can fail on odd input; the declared type still stands
        return ""
