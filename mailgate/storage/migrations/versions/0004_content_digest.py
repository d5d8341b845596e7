"""messages.content_sha256: the content digest that tells two mails with one Message-ID apart

Revision ID: 0004_content_digest
Revises: 0003_merge

A known Message-ID makes a mail a duplicate only with the same author and
content (mailgate.mail.sameness); the digest is kept on the message, and the
unique ``dedupe_key`` index covers Message-ID, author and digest together.
Rows stored before have an empty digest and their old key (the Message-ID
alone). Plain ADD/DROP COLUMN, not a batch table copy: SQLite's full-text
triggers on ``messages`` must survive.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_content_digest"
down_revision = "0003_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("content_sha256", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    op.execute("ALTER TABLE messages DROP COLUMN content_sha256")
