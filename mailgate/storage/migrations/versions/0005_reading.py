"""attachments.part_of: the attached message a file was found in

Revision ID: 0005_reading
Revises: 0007_blobs

An attached message (``message/rfc822``) is kept whole as one attachment, and
the files inside it are stored too, each naming the attached message it
belongs to (its filename); "" for the mail's own attachments. Plain ADD/DROP
COLUMN, as 0004.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_reading"
down_revision = "0007_blobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attachments", sa.Column("part_of", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    op.execute("ALTER TABLE attachments DROP COLUMN part_of")
