"""An outbox row is written at once, with the VERP return path of its own id, without the unit of work.

The row comes back as a loaded object of the session, equal to what the database holds: nothing waits
for a flush, and a later change to it is an ordinary UPDATE.
"""

from __future__ import annotations

from sqlalchemy import event, select

from mailgate.outbound import outbox
from mailgate.outbound.bounces import verp_address
from mailgate.storage.models import Outbox, Ticket
from mailgate.storage.threads import indexed
from tests.helpers import make_mail


def _enqueue(session, services, ticket, **kwargs):
    return outbox.enqueue(
        session,
        services,
        ticket=ticket,
        kind="resolved",
        recipients=[("Alice", "alice@customer.example")],
        incoming=None,
        **kwargs,
    )


def test_the_row_is_in_the_database_with_its_verp_path_before_any_flush(harness):
    harness.deliver(make_mail())
    services = harness.runtime.services
    with harness.session() as session, session.begin():
        ticket = session.scalar(select(Ticket))
        flushes: list[int] = []
        event.listen(session, "after_flush", lambda *a: flushes.append(1))

        row = _enqueue(session, services, ticket)

        assert row is not None and row in session
        assert not session.new and not session.dirty, "written already: nothing left for a flush"
        stored = session.connection().execute(select(Outbox.mail_from, Outbox.status).where(Outbox.id == row.id)).one()
        key = outbox.state(services).key
        assert stored == (verp_address(key, services.config.support.address, row.id), "pending")
        assert row.mail_from == stored.mail_from
        assert indexed(session, row.message_id) == (ticket.id, None), "a reply to it threads into the ticket"
        assert flushes == []


def test_a_mail_that_is_a_stored_message_names_it(harness):
    harness.deliver(make_mail())
    with harness.session() as session, session.begin():
        ticket = session.scalar(select(Ticket))
        message = ticket.messages[0]

        row = _enqueue(
            session, harness.runtime.services, ticket, automatic=False, store_message=False, message_pk=message.id
        )

        assert row is not None and row.message_pk == message.id
        assert session.connection().execute(select(Outbox.message_pk).where(Outbox.id == row.id)).scalar() == message.id


def test_a_rolled_back_change_takes_its_mail_along(harness):
    harness.deliver(make_mail())
    with harness.session() as session, session.begin():
        ticket = session.scalar(select(Ticket))
        before = session.scalar(select(Outbox.id).order_by(Outbox.id.desc()))
        try:
            with session.begin_nested():
                assert _enqueue(session, harness.runtime.services, ticket) is not None
                raise RuntimeError("the change that caused the mail failed")
        except RuntimeError:
            pass
        assert session.scalar(select(Outbox.id).order_by(Outbox.id.desc())) == before


def test_a_person_s_mail_is_stored_in_the_thread_and_its_row_names_it_from_the_start(harness):
    harness.deliver(make_mail())
    with harness.session() as session, session.begin():
        ticket = session.scalar(select(Ticket))
        statements: list[str] = []
        event.listen(session.connection(), "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))

        row = _enqueue(session, harness.runtime.services, ticket, automatic=False)

        assert row is not None and row.message_pk is not None
        assert indexed(session, row.message_id) == (ticket.id, row.message_pk)
        updates = [sql.split()[:2] for sql in statements if sql.startswith("UPDATE")]
        assert updates == [["UPDATE", "outbox"]], "the return path only: the message is named in the INSERT"
