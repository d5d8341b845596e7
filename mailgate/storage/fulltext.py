"""SQLite's full-text index of the stored messages, written beside each message row.

Migration 0002 kept ``messages_fts`` in step with an AFTER INSERT trigger. A
trigger makes its INSERT run in a statement savepoint, and FTS5 writes its
pending terms to disk at every savepoint: each stored mail became an index
segment of its own, which cost more than the message row itself (about 240 µs
a mail of 3 KB against 25 for the row, measured on the benchmark's corpus) and
left the segments to be merged later. Written by its own INSERT after the
message's, the index keeps a whole batch's terms in memory until the commit
(about 130 µs a mail). Migration 0009 drops that trigger; deletes and updates
keep theirs (they are rare, and a stale index row must never stay behind).

Every way a message is stored writes its index row: :func:`add` after
``insert_now`` (the pipeline and outbound mail), a listener for a message
flushed by the ORM, :func:`rebuild` after a bulk copy. PostgreSQL indexes an
expression over the table itself (migration 0002): nothing to write there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, column, event, insert, table, text
from sqlalchemy.orm import Mapper, Session

from mailgate.storage import direct
from mailgate.storage.models import Message

FTS = table("messages_fts", column("rowid"), column("subject"), column("text"))
_ADD = insert(FTS)


def _values(message: Message) -> dict[str, Any]:
    return {"rowid": message.id, "subject": message.subject or "", "text": message.text or ""}


def add(session: Session, message: Message) -> None:
    """Index a message just written with ``insert_now`` (in the same transaction)."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        direct.write(conn, _ADD, _values(message))


@event.listens_for(Message, "after_insert")
def _flushed(_mapper: Mapper[Message], conn: Connection, message: Message) -> None:
    """A message the unit of work inserted (``session.add`` and a flush) is indexed as well."""
    if conn.dialect.name == "sqlite":
        conn.execute(_ADD, _values(message))


def rebuild(conn: Connection) -> None:
    """Index every message again from the table (after rows were copied in bulk)."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')"))
