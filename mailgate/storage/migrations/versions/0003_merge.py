"""merge the outbound and SLA/search branches: one head to build on

Revision ID: 0003_merge
Revises: 0002_outbound, 0002_sla_search
"""

from __future__ import annotations

revision = "0003_merge"
down_revision = ("0002_outbound", "0002_sla_search")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: the two branches touch different tables."""


def downgrade() -> None:
    """Nothing to change."""
