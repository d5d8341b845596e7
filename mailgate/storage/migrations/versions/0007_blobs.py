"""blobs in the database, and the values every daemon of one installation shares

Revision ID: 0007_blobs
Revises: 0004_content_digest

``blobs`` and ``blob_chunks`` hold attachments and raw mails when
``[blobs] backend = "database"`` (the default on PostgreSQL), so daemons on
several machines read the same blobs; a blob is cut into chunks so no read or
write needs it whole. ``installation`` holds the signing key (or only its
fingerprint, when a ``secret_file`` is configured) so that an address signed
by one daemon is proven at another.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_blobs"
down_revision = "0004_content_digest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blobs.sha256"], name=op.f("fk_blob_chunks_sha256_blobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sha256", "seq", name=op.f("pk_blob_chunks")),
    )
    op.create_table(
        "installation",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_installation")),
    )


def downgrade() -> None:
    op.drop_table("installation")
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
