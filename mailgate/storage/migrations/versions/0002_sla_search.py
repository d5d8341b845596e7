"""SLA marks for the resolution target, and full-text search over messages

Revision ID: 0002_sla_search
Revises: 0001

- ``tickets.resolution_warned_at`` / ``resolution_escalated_at``: the
  resolution target's warning and escalation, each claimed once by a
  conditional UPDATE (the first-response target uses ``sla_warned_at`` /
  ``sla_escalated_at`` from 0001).
- SQLite: an FTS5 table over ``messages(subject, text)`` kept in sync by
  triggers, with the ``unicode61`` tokenizer (case-folds Cyrillic, Greek …;
  keeps diacritics, as PostgreSQL's ``simple`` does, so both find the same).
- PostgreSQL: a GIN index on ``to_tsvector('simple', subject || ' ' || text)``;
  the ``simple`` configuration lowercases and does not stem, so a word is
  found in any language.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_sla_search"
down_revision = "0001"
branch_labels = None
depends_on = None

FTS_DOCUMENT = "to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(text, ''))"

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE messages_fts USING fts5(subject, text, content='messages', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0')",
    "CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END",
    "CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text); "
    "END",
    "CREATE TRIGGER messages_fts_au AFTER UPDATE OF subject, text ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, subject, text) VALUES ('delete', old.id, old.subject, old.text); "
    "INSERT INTO messages_fts(rowid, subject, text) VALUES (new.id, new.subject, new.text); END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
]


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("resolution_warned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("resolution_escalated_at", sa.DateTime(timezone=True), nullable=True))
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX ix_messages_fts ON messages USING gin ({FTS_DOCUMENT})")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("messages_fts_au", "messages_fts_ad", "messages_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_messages_fts")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("resolution_escalated_at")
        batch.drop_column("resolution_warned_at")
