"""SQLite: the full-text index row of a new message is written by the code that stores it

Revision ID: 0009_fulltext_by_code
Revises: 0008_ticket_numbers

The AFTER INSERT trigger of 0002 ran each message's INSERT in a statement
savepoint, at which FTS5 flushes its pending terms: a segment per mail
(:mod:`mailgate.storage.fulltext`). The delete and update triggers stay.
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
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')")  # the segments the trigger left: one


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(INSERT_TRIGGER)
