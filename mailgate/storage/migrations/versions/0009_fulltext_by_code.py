"""SQLite: the full-text index row of a new message is written by the code that stores it

Revision ID: 0009_fulltext_by_code
Revises: 0008_ticket_numbers

The AFTER INSERT trigger of 0002 ran each message's INSERT in a statement
savepoint, and FTS5 writes its pending terms to disk at every savepoint: each
stored mail became an index segment of its own, which cost more than the
message row itself (about 240 µs a mail of 3 KB against 25 for the row, on the
benchmark's corpus) and left the segments to be merged later. Written by a
statement of its own after the message's (the ``after_insert`` listener of
``Message`` in mailgate.storage.models, which ``rows.insert_now`` fires too),
the terms of a whole batch stay in memory until the commit (about 130 µs a
mail). So does nothing else of a batch on SQLite use RETURNING, which also
runs in a statement savepoint. The delete and update triggers stay (rare, and
a stale index row must never stay behind). A row written by hand with SQL is
indexed by ``INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')``.
PostgreSQL: nothing (its index is an expression over the table).
"""

from __future__ import annotations

from alembic import op

revision = "0009_fulltext_by_code"
down_revision = "0008_ticket_numbers"
branch_labels = None
depends_on = None

INSERT_TRIGGER = (
    "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS messages_fts_ai")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(INSERT_TRIGGER)
