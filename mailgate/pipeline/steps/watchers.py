"""Adding watchers within the limits of ``[support] max_new_watchers`` and ``max_watchers``.

Anyone may put any number of addresses in Cc, and every watcher gets the
agents' answers with the other watchers visible in Cc. Unbounded, one mail
with 20,000 Cc addresses turns the next answer into a mail to 20,000 people
that shows each of them to all. So one mail adds at most ``max_new_watchers``
(the first ones in its Cc, in order) and a ticket never has more than
``max_watchers``; the addresses left out stay in the message's Cc as received,
and an event on the message says how many were left out.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailgate.storage import rows
from mailgate.storage.models import Ticket, Watcher
from mailgate.storage.rows import insert_now

# Built once: building a statement costs more than running it.
_WATCHING = select(Watcher.address).where(Watcher.ticket_id == bindparam("ticket_id"))


def add(
    session: Session,
    ticket: Ticket,
    addresses: Iterable[str],
    *,
    max_total: int,
    max_new: int | None = None,
    new_ticket: bool = False,
) -> tuple[list[str], int]:
    """Add new ``addresses`` as watchers of ``ticket``, in order, within the limits.

    Returns the addresses added and how many new ones were left out. The
    customer and addresses already watching are not new and count for nothing.
    ``new_ticket``: the ticket's row was written a moment ago in this transaction, so no one watches
    it yet and nothing is read (a customer's first mail with people in Cc).
    """
    known = set() if new_ticket else set(session.scalars(_WATCHING, {"ticket_id": ticket.id}).all())
    present = len(known)
    # a written ticket, nothing waiting for a flush: each row at once, in order, not by the unit of work
    at_once = rows.flushed_id(ticket) is not False and rows.nothing_pending(session)
    room = max(0, max_total - present)
    if max_new is not None:
        room = min(room, max_new)
    added: list[str] = []
    left = 0
    for address in dict.fromkeys(addresses):
        if address in known or address == ticket.customer.address:
            continue
        if len(added) < room:
            if at_once:
                insert_now(session, rows.new(Watcher, ticket_id=ticket.id, address=address))
            else:
                session.add(Watcher(ticket_id=ticket.id, address=address))
            added.append(address)
        else:
            left += 1
    return added, left
