"""Find the ticket a mail follows up, in the design's order.

1. a signed reply address (``support+<ticket>.<mac>@…``), when the agents
   module has registered a resolver for it;
2. the subject token ``[#<number>]``;
3. In-Reply-To, then References (newest first), against every Message-ID we
   stored or sent;
4. otherwise: a new ticket.

Each finder takes data and returns a decision; the caller does the writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from mailgate.domain.tokens import find_ticket_number
from mailgate.storage import direct
from mailgate.storage.models import Message, MessageRef, Ticket
from mailgate.storage.rows import flushed_id, held, loaded, nothing_pending, table

# Built once: a statement built per call costs several times its execution (these run for every mail).
_TICKET_BY_NUMBER = select(*table(Ticket).columns).where(table(Ticket).c.number == bindparam("number"))
_TICKET_BY_ID = select(*table(Ticket).columns).where(table(Ticket).c.id == bindparam("id"))
_REFS_BY_KEYS = select(MessageRef.msgid_sha256, MessageRef.ticket_id).where(
    MessageRef.msgid_sha256.in_(bindparam("keys", expanding=True))
)
_REF_BY_KEY = select(MessageRef.ticket_id, MessageRef.message_pk).where(MessageRef.msgid_sha256 == bindparam("key"))
_INSERT_REF = insert(table(MessageRef))


def msgid_key(message_id: str) -> str:
    """The lookup key of a Message-ID: sha256 of its text between the angle brackets."""
    return hashlib.sha256(message_id.strip().strip("<>").encode("utf-8", "replace")).hexdigest()


def by_token(session: Session, subject: str, prefix: str) -> Ticket | None:
    number = find_ticket_number(subject, prefix)
    if number is None:
        return None
    session.flush()  # as the ORM's query would: a ticket added but not written yet is found too
    found = direct.read(session, _TICKET_BY_NUMBER, {"number": number})
    return loaded(session, Ticket, found[0]) if found else None


def by_references(session: Session, in_reply_to: Iterable[str], references: Iterable[str]) -> Ticket | None:
    """The ticket of the closest known ancestor: In-Reply-To first, then References newest first."""
    candidates = list(dict.fromkeys([*in_reply_to, *reversed(list(references))]))[:100]
    if not candidates:
        return None
    keys = [msgid_key(c) for c in candidates]
    found = {key: ticket_id for key, ticket_id in session.execute(_REFS_BY_KEYS, {"keys": keys})}
    for key in keys:
        if key in found:
            return ticket_by_id(session, found[key])
    return None


def ticket_by_id(session: Session, ticket_id: int) -> Ticket | None:
    """``session.get(Ticket, ticket_id)``: the one the session holds, else the row read with one SELECT and
    made a loaded object without the ORM's query (a third of its cost)."""
    known = held(session, Ticket, ticket_id)
    if known is not None:
        return known
    found = direct.read(session, _TICKET_BY_ID, {"id": ticket_id})
    return loaded(session, Ticket, found[0]) if found else None


def remember_message_id(
    session: Session, message_id: str, ticket: Ticket, message: Message | None, *, new: bool = False
) -> None:
    """Index a Message-ID we stored or sent, so replies to it thread into its ticket.

    ``new``: the id was made just now (one of ours), or was looked up and found absent, so it is not
    looked up again. The ticket and message may be rows not flushed yet: then the entry waits for
    the flush that writes them; else it is one INSERT at once (mailgate.storage.rows).
    """
    if not message_id:
        return
    key = msgid_key(message_id)
    if not new and indexed(session, message_id) is not None:
        return
    ticket_id, message_pk = flushed_id(ticket), flushed_id(message)
    if ticket_id is not False and message_pk is not False and nothing_pending(session):
        direct.write(session, _INSERT_REF, {"msgid_sha256": key, "ticket_id": ticket_id, "message_pk": message_pk})
    else:
        session.add(MessageRef(msgid_sha256=key, ticket=ticket, message=message))


def indexed(session: Session, message_id: str) -> tuple[int, int | None] | None:
    """(ticket id, message pk) of the first mail indexed under this Message-ID, if any."""
    row = session.execute(_REF_BY_KEY, {"key": msgid_key(message_id)}).first()
    return (row[0], row[1]) if row is not None else None
