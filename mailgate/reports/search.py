"""Full-text search over the subjects and text of every message, with filters.

SQLite: the FTS5 table ``messages_fts`` (migration 0002), written beside each
new message by its own INSERT (migration 0009) and kept in step on deletes and
updates by triggers; its ``unicode61`` tokenizer folds case in every script, so
``принтер`` finds ``ПРИНТЕР``. Diacritics count (``café`` is not ``cafe``) on
both databases, so a query finds the same tickets on either.
PostgreSQL: ``to_tsvector('simple', …)`` over the same text, backed by a GIN
index; ``simple`` lowercases and does not stem, whatever the language.

A query is words; a ticket matches when one of its messages has every word
(``AND``). A word ending in ``*`` matches as a prefix. Quotes and operators
are not interpreted: what an admin types is what is looked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, literal_column, select, text
from sqlalchemy.orm import Session

from mailgate.storage.models import Customer, Message, Ticket

_WORD = re.compile(r"[\w*]+", re.UNICODE)
# Exactly the expression of the GIN index of migration 0002, so that PostgreSQL uses the index.
PG_DOCUMENT = "to_tsvector('simple', coalesce(messages.subject, '') || ' ' || coalesce(messages.text, ''))"


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    queue: str | None = None
    customer: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50


def words(query: str) -> list[str]:
    """The words of a query; ``*`` is kept only at the end of a word (a prefix search)."""
    found = []
    for word in _WORD.findall(query):
        stem = word.replace("*", "")
        if stem:
            found.append(stem + ("*" if word.endswith("*") else ""))
    return found


def fts5_query(terms: list[str]) -> str:
    """Each word quoted (so nothing is an operator), ANDed; a trailing * stays a prefix."""
    return " ".join(f'"{t.rstrip("*")}"' + ("*" if t.endswith("*") else "") for t in terms)


def tsquery(terms: list[str]) -> str:
    """A to_tsquery('simple', …) text: words ANDed, ``:*`` for a prefix."""
    return " & ".join(
        "'" + t.rstrip("*").replace("'", "''").replace("\\", "") + "'" + (":*" if t.endswith("*") else "")
        for t in terms
    )


def matching_messages(session: Session, terms: list[str]) -> Select[Any]:
    """``SELECT message id`` for messages that contain every term."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return (
            select(literal_column("rowid").label("id"))
            .select_from(text("messages_fts"))
            .where(text("messages_fts MATCH :fts").bindparams(fts=fts5_query(terms)))
        )
    if dialect == "postgresql":
        return select(Message.id).where(
            text(f"{PG_DOCUMENT} @@ to_tsquery('simple', :tsq)").bindparams(tsq=tsquery(terms))
        )
    raise NotImplementedError(f"search is not available on {dialect}")


def search(session: Session, query: str, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Tickets with a message matching ``query`` (newest activity first), each with a snippet."""
    terms = words(query)
    if not terms:
        return []
    hits = matching_messages(session, terms).subquery()
    rows = session.execute(
        select(Ticket, func.count(Message.id), func.min(Message.id))
        .join(Message, Message.ticket_id == Ticket.id)
        .join(Customer, Customer.id == Ticket.customer_id)
        .where(Message.id.in_(select(hits.c.id)), *_conditions(filters))
        .group_by(Ticket.id)
        .order_by(Ticket.updated_at.desc(), Ticket.id.desc())
        .limit(filters.limit)
    ).all()
    results = []
    for ticket, count, first_id in rows:
        message = session.get(Message, first_id)
        results.append(
            {
                "number": ticket.number,
                "subject": ticket.subject,
                "status": ticket.status,
                "queue": ticket.queue,
                "customer": ticket.customer.address,
                "created_at": ticket.created_at.isoformat(),
                "updated_at": ticket.updated_at.isoformat(),
                "matches": count,
                "snippet": snippet(f"{message.subject}\n{message.text}" if message else "", terms),
            }
        )
    return results


def _conditions(filters: Filters) -> list[Any]:
    conditions: list[Any] = []
    if filters.status:
        conditions.append(Ticket.status == filters.status)
    if filters.queue:
        conditions.append(Ticket.queue == filters.queue)
    if filters.customer:
        who = filters.customer.strip().lower()
        conditions.append(Customer.address.endswith(who) if who.startswith("@") else Customer.address == who)
    if filters.since:
        conditions.append(Ticket.created_at >= filters.since)
    if filters.until:
        conditions.append(Ticket.created_at < filters.until)
    return conditions


def snippet(body: str, terms: list[str], width: int = 80) -> str:
    """The text around the first term found, on one line."""
    flat = " ".join(body.split())
    lower = flat.casefold()
    positions = [p for p in (lower.find(t.rstrip("*").casefold()) for t in terms) if p >= 0]
    start = max(0, min(positions) - width // 4) if positions else 0
    piece = flat[start : start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")
