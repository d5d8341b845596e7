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
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import CompoundSelect, bindparam, literal, null, select, union_all
from sqlalchemy.orm import Session

from mailgate.context import Envelope, MessageContext, Services, sender_address
from mailgate.domain.tokens import find_ticket_number
from mailgate.mail import language as locale_detect
from mailgate.mail import parse as parsing
from mailgate.mail.sameness import content_digest, dedupe_key
from mailgate.pipeline.steps.agents import Reading, authenticate, follow_up, read_text
from mailgate.pipeline.steps.converse import converse
from mailgate.pipeline.steps.held import hold_unthreaded
from mailgate.pipeline.steps.react import react
from mailgate.pipeline.steps.route import route
from mailgate.pipeline.steps.store import known_locales, store
from mailgate.routing import spam
from mailgate.routing.facts import MailFacts
from mailgate.storage import direct, rows
from mailgate.storage import threads as followup
from mailgate.storage.models import Message, MessageRef, Ticket

log = logging.getLogger("mailgate.pipeline")

Step = Callable[[MessageContext], None]


class MailBudgetExceeded(Exception):
    """One mail took more than its work budget; retrying it would cost as much again."""


def parse(ctx: MessageContext) -> None:
    ctx.mail = parsing.parse(ctx.raw)
    ctx.raw_sha256 = hashlib.sha256(ctx.raw).hexdigest()


def dedupe(ctx: MessageContext) -> None:
    """A duplicate is the same mail again: same Message-ID, author and content (see mailgate.mail.sameness).

    A different mail with a Message-ID we know is stored anyway, with a note the
    store step turns into a ``message.id_collision`` event; threading by that
    Message-ID keeps to the first mail (its reference is never replaced).
    """
    message_id = ctx.mail.message_id
    if not message_id:
        ctx.dedupe_key = ctx.raw_sha256
        _stop_if_stored(ctx, ctx.dedupe_key)
        return
    author = sender_address(ctx)
    ctx.content_sha256 = ctx.content_sha256 or content_digest(ctx.raw)  # prepare may have taken it
    ctx.dedupe_key = dedupe_key(message_id, ctx.raw_sha256, author, ctx.content_sha256)
    legacy_key = dedupe_key(message_id, "")
    # Core, one statement: the stored mails under either key and the index entry of the Message-ID
    # (the first statement of the mail: nothing of it waits for a flush yet)
    keys = {"key": ctx.dedupe_key, "legacy": legacy_key, "msgid": followup.msgid_key(message_id)}
    # PostgreSQL: the sender lists the route step reads for a new ticket, in this round trip
    postgresql = ctx.session.connection().dialect.name == "postgresql"
    sender = MailFacts(ctx.mail, ctx.envelope).text("from") if postgresql else ()
    listing = spam.listing_read(sender[0]) if sender else None
    reads = [(_STORED_OR_INDEXED, keys), *([listing] if listing else []), *([(_MESSAGE_ID, {})] if postgresql else [])]
    found, *also = direct.read_many(ctx.session, reads)
    if postgresql:  # and the id of the mail's row, so it goes without RETURNING (a duplicate leaves a gap)
        *also, [(ctx.notes.message_row_id,)] = also
    if listing is not None:
        ctx.notes.sender_lists = (sender[0], {entry: verdict for entry, verdict in also[0]})
    stored, first = {}, None
    for row in map(_Found._make, found):
        if row.indexed:
            first = (row.ticket_id, row.message_pk)
        else:
            stored[row.dedupe_key] = row
    same = stored.get(ctx.dedupe_key)
    legacy = stored.get(legacy_key)
    if same is None and legacy is not None and legacy.content_sha256 == "" and legacy.from_addr == author:
        same = legacy  # stored before digests: the author must do
    if same is not None:
        ctx.notes.duplicate_of_ticket_id = same.ticket_id
        ctx.stop("duplicate")
        return
    if first is not None:
        ctx.notes.message_id_collision = {"ticket_id": first[0], "message_pk": first[1]}
    ctx.notes.message_id_indexed = first is not None


class _Found(NamedTuple):
    """A row of _STORED_OR_INDEXED: a stored mail under one of the keys, or the Message-ID's index entry."""

    indexed: bool
    dedupe_key: str | None
    ticket_id: int
    content_sha256: str | None
    from_addr: str | None
    message_pk: int | None


# Built once (see mailgate.storage.threads): the lookups every mail makes.
_STORED_OR_INDEXED: CompoundSelect = union_all(
    select(
        literal(False).label("indexed"),
        Message.dedupe_key,
        Message.ticket_id,
        Message.content_sha256,
        Message.from_addr,
        null().label("message_pk"),
    ).where(Message.dedupe_key.in_([bindparam("key"), bindparam("legacy")])),  # two: no list to expand per call
    select(
        literal(True),
        null(),
        MessageRef.ticket_id,
        null(),
        null(),
        MessageRef.message_pk,
    ).where(MessageRef.msgid_sha256 == bindparam("msgid")),
)
_TICKET_OF_KEY = select(Message.ticket_id).where(Message.dedupe_key == bindparam("key"))
_MESSAGE_ID = rows.next_ids(Message)


def _stop_if_stored(ctx: MessageContext, key: str) -> bool:
    existing = ctx.session.scalar(_TICKET_OF_KEY, {"key": key})
    if existing is None:
        return False
    ctx.notes.duplicate_of_ticket_id = existing
    ctx.stop("duplicate")
    return True


def _by_token(ctx: MessageContext) -> Ticket | None:
    return followup.by_token(ctx.session, ctx.mail.subject, ctx.services.config.support.token_prefix)


def _by_reference(ctx: MessageContext) -> Ticket | None:
    return followup.by_references(ctx.session, ctx.mail.in_reply_to, ctx.mail.references)


THREAD_FINDERS: tuple[tuple[str, Callable[[MessageContext], Ticket | None]], ...] = (
    ("token", _by_token),
    ("reference", _by_reference),
    ("automatic", hold_unthreaded),  # last: automatic mail that found no ticket opens none (steps.held)
)


def thread(ctx: MessageContext) -> None:
    """Find the ticket; finders registered in ``services.thread_finders`` (signed addresses) go first."""
    for reason, finder in (*ctx.services.thread_finders, *THREAD_FINDERS):
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


@dataclass(frozen=True)
class Parsed:
    """A mail read before its batch's transaction begins (:func:`prepare`)."""

    mail: parsing.ParsedMail
    raw_sha256: str
    seconds: float  # what reading it cost, charged to the mail's work budget
    content_sha256: str = ""  # of a mail with a Message-ID, for dedupe
    reading: Reading | None = None  # its text read for the followup step (new text, commands)


def prepare(raw: bytes, services: Services) -> Parsed | None:
    """What the steps compute from the mail alone, done before the transaction: a worker that does it
    while it holds no lock lets another worker's transaction run meanwhile (SQLite takes its one
    write lock at the first statement; PostgreSQL holds the row locks of the ticket counter).

    The parse, the content digest, the reading of the reply (quotes, commands) and, for a mail that
    looks like it opens a ticket, the language of its text (remembered by ``mail.language.detect``).
    None when reading fails: the steps then run in place and the failure is that mail's alone."""
    started = services.clock.now()
    try:
        mail = parsing.parse(raw)
        read = read_text(mail.text or "")
        digest = content_digest(raw) if mail.message_id else ""
        if _opens_a_ticket(mail, services):
            locale_detect.detect(read.reply.new_text or mail.text)
    except Exception:
        return None
    seconds = (services.clock.now() - started).total_seconds()
    return Parsed(mail, hashlib.sha256(raw).hexdigest(), seconds, digest, read)


def _opens_a_ticket(mail: parsing.ParsedMail, services: Services) -> bool:
    """Whether the store step will likely detect the mail's language: it names no earlier mail, carries
    no ticket token and no Content-Language we have templates for. A guess: a wrong one costs a
    detection here (a reply) or one in the transaction (as without it), never a different answer."""
    if mail.in_reply_to or mail.references:
        return False
    if find_ticket_number(mail.subject, services.config.support.token_prefix) is not None:
        return False
    return locale_detect.from_header(mail.header("content-language")) not in known_locales(services)


def run(
    raw: bytes,
    envelope: Envelope,
    session: Session,
    services: Services,
    steps: Sequence[tuple[str, Step]] = STEPS,
    parsed: Parsed | None = None,
) -> MessageContext:
    """Run every step on one message inside the caller's transaction (``parsed``: its parse step is done)."""
    ctx = MessageContext(raw=raw, envelope=envelope, session=session, services=services)
    budget = services.config.spool.mail_budget
    started = services.clock.now()
    if parsed is not None:
        ctx.mail, ctx.raw_sha256 = parsed.mail, parsed.raw_sha256
        ctx.content_sha256, ctx.notes.reading = parsed.content_sha256, parsed.reading
        started -= timedelta(seconds=parsed.seconds)
    for name, step in steps:
        if parsed is not None and name == "parse":
            continue
        step(ctx)
        if ctx.stopped:
            break
        spent = (services.clock.now() - started).total_seconds()
        if budget and spent > budget:
            raise MailBudgetExceeded(f"work budget of {budget:g}s spent: {spent:.1f}s after step {name}")
    rows.write_changes(session)  # a ticket's changed columns, without the unit of work
    session.flush()
    direct.flush(session)  # the writes still queued (PostgreSQL): an error among them is this mail's
    return ctx
