"""ticket numbers from a sequence on PostgreSQL

Revision ID: 0008_ticket_numbers
Revises: 0005_reading

The ``counters`` row ``ticket`` was taken with UPDATE … RETURNING, whose row
lock lasts until the batch transaction commits: two worker processes (or two
daemons) that each open a ticket took turns for their whole batches. A
sequence hands out a number without a lock that outlives the call. It
continues from the counter; a number taken in a transaction that rolls back
is not given again (numbers may skip, as in every helpdesk that numbers from a
sequence). SQLite keeps the counter: it has one writer at a time anyway.
"""

from __future__ import annotations

from alembic import op

revision = "0008_ticket_numbers"
down_revision = "0005_reading"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE SEQUENCE ticket_numbers AS bigint")
    op.execute("SELECT setval('ticket_numbers', greatest(value, 1), value > 0) FROM counters WHERE name = 'ticket'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "UPDATE counters SET value = greatest(value, (SELECT last_value FROM ticket_numbers WHERE is_called))"
        " WHERE name = 'ticket'"
    )
    op.execute("DROP SEQUENCE ticket_numbers")
