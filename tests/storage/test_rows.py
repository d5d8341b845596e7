"""Rows nobody reads back in the same transaction are written at once, without the unit of work.

An event or a Message-ID index entry whose ticket and message already exist is one INSERT when it is
recorded; one that names a row not flushed yet waits for the flush that writes them. Either way the
events of a ticket keep the order they were recorded in, and a rolled-back mail takes its rows along.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select

from mailgate.storage import audit, direct, rows
from mailgate.storage.models import Customer, Event, Message, MessageRef, Ticket, Watcher
from mailgate.storage.rows import insert_now, write_changes
from mailgate.storage.threads import indexed, remember_message_id
from tests.helpers import make_mail

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _ticket(session, number: int) -> Ticket:
    customer = Customer(address=f"c{number}@customer.example", name="", created_at=NOW)
    return Ticket(number=number, subject="s", queue="support", customer=customer, created_at=NOW, updated_at=NOW)


def _flushes(session) -> list[int]:
    seen: list[int] = []
    event.listen(session, "after_flush", lambda *a: seen.append(1))
    return seen


def _written_and_pending(session) -> tuple[Ticket, Ticket]:
    """A ticket already written, and one added after it that still waits for a flush."""
    written = _ticket(session, 1)
    session.add(written)
    session.flush()
    pending = _ticket(session, 2)
    session.add(pending)
    return written, pending


def test_an_event_of_a_written_ticket_is_inserted_at_once_without_a_flush(harness):
    with harness.runtime.sessions() as session, session.begin():
        ticket = _ticket(session, 1)
        session.add(ticket)
        session.flush()
        flushes = _flushes(session)

        audit.record(session, NOW, "ticket.tagged", ticket=ticket, actor="bob@example.com", tags=["x"])

        assert not session.new, "nothing waits for a flush"
        [(kind, ticket_id, detail)] = session.execute(select(Event.kind, Event.ticket_id, Event.detail)).all()
        assert (kind, ticket_id, detail) == ("ticket.tagged", ticket.id, {"tags": ["x"]})
        assert flushes == []


def test_an_event_of_a_ticket_not_written_yet_waits_for_the_flush_and_names_it(harness):
    with harness.runtime.sessions() as session, session.begin():
        ticket = _ticket(session, 1)
        session.add(ticket)

        audit.record(session, NOW, "ticket.created", ticket=ticket, actor="alice@customer.example")

        assert any(isinstance(obj, Event) for obj in session.new)
        session.flush()
        assert session.scalar(select(Event.ticket_id)) == ticket.id


def test_events_keep_the_order_they_were_recorded_in_when_both_ways_mix(harness):
    with harness.runtime.sessions() as session, session.begin():
        written, pending = _written_and_pending(session)

        audit.record(session, NOW, "first", ticket=pending)
        audit.record(session, NOW, "second", ticket=written)  # after one still pending: waits behind it
        session.flush()
        audit.record(session, NOW, "third", ticket=written)

        assert session.scalars(select(Event.kind).order_by(Event.id)).all() == ["first", "second", "third"]


def test_events_recorded_together_are_one_statement_in_their_order(harness):
    with harness.runtime.sessions() as session, session.begin():
        ticket = _ticket(session, 1)
        session.add(ticket)
        session.flush()
        inserts: list[str] = []
        engine = harness.runtime.engine

        def listener(conn, cursor, statement, *rest):
            if statement.startswith("INSERT"):
                inserts.append(statement)

        event.listen(engine, "before_cursor_execute", listener)
        try:
            audit.record_all(
                session,
                NOW,
                [
                    audit.Pending("ticket.created", ticket, None, "a@x.example", {"queue": "q"}),
                    audit.Pending("message.received", ticket),
                ],
            )
            direct.flush(session)  # on PostgreSQL it waits for the next statement
        finally:
            event.remove(engine, "before_cursor_execute", listener)

        assert len(inserts) == 1
        rows = session.execute(select(Event.kind, Event.actor, Event.detail).order_by(Event.id)).all()
        assert [tuple(r) for r in rows] == [
            ("ticket.created", "a@x.example", {"queue": "q"}),
            ("message.received", "", {}),
        ]


def test_events_recorded_together_behind_a_pending_row_wait_for_it_in_their_order(harness):
    with harness.runtime.sessions() as session, session.begin():
        written, pending = _written_and_pending(session)

        audit.record(session, NOW, "first", ticket=pending)
        audit.record_all(session, NOW, [audit.Pending("second", written), audit.Pending("third", written)])
        session.flush()

        assert session.scalars(select(Event.kind).order_by(Event.id)).all() == ["first", "second", "third"]


def test_an_index_entry_of_a_written_ticket_is_inserted_at_once_and_found(harness):
    with harness.runtime.sessions() as session, session.begin():
        ticket = _ticket(session, 1)
        session.add(ticket)
        session.flush()

        remember_message_id(session, "<a@customer.example>", ticket, None, new=True)
        remember_message_id(session, "<a@customer.example>", ticket, None)  # known: not indexed twice

        assert not session.new
        assert indexed(session, "<a@customer.example>") == (ticket.id, None)
        assert len(session.scalars(select(MessageRef)).all()) == 1


def test_a_rolled_back_mail_takes_its_events_and_index_entries_along(harness):
    with harness.runtime.sessions() as session, session.begin():
        ticket = _ticket(session, 1)
        session.add(ticket)
        session.flush()
        try:
            with session.begin_nested():
                audit.record(session, NOW, "message.received", ticket=ticket)
                remember_message_id(session, "<gone@customer.example>", ticket, None, new=True)
                raise RuntimeError("a later step failed")
        except RuntimeError:
            pass
        assert session.scalars(select(Event)).all() == []
        assert indexed(session, "<gone@customer.example>") is None


@pytest.mark.parametrize("cc", [None, "Bob <bob@customer.example>, carol@customer.example"], ids=["alone", "with cc"])
def test_a_new_tickets_mail_is_stored_and_acknowledged_without_a_flush(harness, cc):
    flushes: list[int] = []
    sessions = harness.runtime.sessions
    real = sessions.__call__

    def tracked(*args, **kwargs):
        session = real(*args, **kwargs)
        event.listen(
            session, "after_flush", lambda s, ctx: flushes.append([type(o).__name__ for o in [*s.new, *s.dirty]])
        )
        return session

    harness.worker.sessions = tracked  # type: ignore[method-assign]
    harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>", cc=cc))

    with sessions() as session:
        kinds = session.scalars(select(Event.kind).order_by(Event.id)).all()
        assert kinds[:2] == ["ticket.created", "message.received"]
        assert indexed(session, "<fire@customer.example>") is not None
        watching = session.scalars(select(Watcher.address).order_by(Watcher.id)).all()
        assert watching == (["bob@customer.example", "carol@customer.example"] if cc else [])
    # customer, ticket, message, the events, the index, the watchers and the outbox row (acknowledgment)
    # are each inserted at once: the unit of work has nothing to do for a new ticket's mail.
    assert flushes == []


def test_a_reply_that_cannot_prove_its_sender_is_flagged_in_the_same_one_flush(harness):
    harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))
    flushes: list[list[str]] = []
    real = harness.runtime.sessions

    def tracked(*args, **kwargs):
        session = real(*args, **kwargs)
        event.listen(session, "after_flush", lambda s, ctx: flushes.append(sorted(type(o).__name__ for o in s.new)))
        return session

    harness.worker.sessions = tracked  # type: ignore[method-assign]
    harness.deliver(make_mail(subject="Re: [#1] Printer on fire", msgid="<fire2@customer.example>"))

    with real() as session:
        [defects] = session.execute(
            select(Message.parse_defects).where(Message.message_id == "<fire2@customer.example>")
        ).one()
    assert defects == ["unproven sender"]
    assert flushes == [], "the message is inserted with its flag, the ticket's updated_at is one UPDATE"


def test_a_row_inserted_at_once_is_a_loaded_object_of_the_session(harness):
    with harness.runtime.sessions() as session, session.begin():
        customer = Customer(address="c@customer.example", created_at=NOW)
        insert_now(session, customer)

        assert customer in session and not session.new and not session.dirty
        assert customer.name == "", "the column's default is on the object as in the row"
        assert session.get(Customer, customer.id) is customer
        customer.name = "Carol"
        session.flush()
        assert session.connection().execute(select(Customer.name)).scalar_one() == "Carol"


def test_a_rolled_back_row_leaves_its_id_to_the_next_one(harness):
    with harness.runtime.sessions() as session, session.begin():
        try:
            with session.begin_nested():
                first = Customer(address="gone@customer.example", created_at=NOW)
                insert_now(session, first)
                raise RuntimeError("a later step failed")
        except RuntimeError:
            pass
        second = Customer(address="kept@customer.example", created_at=NOW)
        insert_now(session, second)  # SQLite gives the freed id again

        assert session.get(Customer, second.id) is second
        assert session.scalars(select(Customer.address)).all() == ["kept@customer.example"]


def test_a_mail_that_fails_after_store_does_not_hold_up_the_next_new_ticket_in_its_batch(harness):
    from mailgate.spool.disk import SpoolMeta

    def breaks(ctx):
        if ctx.mail.subject == "breaks":
            raise RuntimeError("the reactor broke on this one")

    harness.runtime.services.reactors.insert(0, breaks)  # after store: its rows are written, then rolled back
    for subject, msgid in (("breaks", "<b@customer.example>"), ("fine", "<f@customer.example>")):
        meta = SpoolMeta(id="", source="smtp", mail_from="new@customer.example", rcpt_tos=["support@example.com"])
        harness.runtime.spool.put(make_mail(subject=subject, msgid=msgid, sender="new@customer.example"), meta)
    harness.worker.drain()

    with harness.runtime.sessions() as session:
        assert session.scalars(select(Ticket.subject)).all() == ["fine"]
        assert session.scalars(select(Customer.address)).all() == ["new@customer.example"]


def test_a_follow_up_writes_its_tickets_changes_without_the_unit_of_work(harness, clock):
    harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))
    flushes: list[int] = []
    real = harness.runtime.sessions

    def tracked(*args, **kwargs):
        session = real(*args, **kwargs)
        event.listen(session, "after_flush", lambda *a: flushes.append(1))
        return session

    harness.worker.sessions = tracked  # type: ignore[method-assign]
    clock.advance(3600)
    harness.deliver(make_mail(subject="Re: [#1] Printer on fire", msgid="<fire2@customer.example>"))

    with real() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.updated_at == clock.now()
    assert flushes == []


def test_changed_columns_are_one_update_and_the_object_is_clean_after(harness):
    with harness.runtime.sessions() as session, session.begin():
        session.add(_ticket(session, 1))
    with harness.runtime.sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        ticket.status, ticket.tags, ticket.resolved_at = "resolved", ["vip", "printer"], NOW
        assert write_changes(session) == 1
        assert not session.dirty
        flushes = _flushes(session)
        session.flush()
        assert flushes == []
    with harness.runtime.sessions() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert (ticket.status, ticket.tags, ticket.resolved_at) == ("resolved", ["vip", "printer"], NOW)


def test_a_relationship_change_is_left_to_the_flush(harness):
    with harness.runtime.sessions() as session, session.begin():
        session.add(_ticket(session, 1))
        session.add(Customer(address="other@customer.example", name="", created_at=NOW))
    with harness.runtime.sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        other = session.scalars(select(Customer).where(Customer.address == "other@customer.example")).one()
        ticket.customer = other
        assert write_changes(session) == 0
    with harness.runtime.sessions() as session:
        assert session.scalars(select(Ticket)).one().customer.address == "other@customer.example"


def test_changes_rolled_back_with_their_transaction_are_gone(harness):
    with harness.runtime.sessions() as session, session.begin():
        session.add(_ticket(session, 1))
    with harness.runtime.sessions() as session:
        with session.begin():
            ticket = session.scalars(select(Ticket)).one()
            ticket.status = "resolved"
            write_changes(session)
            session.rollback()
        assert session.scalars(select(Ticket)).one().status == "new"


def test_changes_written_in_a_savepoint_rolled_back_are_read_again_from_the_database(harness):
    with harness.runtime.sessions() as session, session.begin():
        session.add(_ticket(session, 1))
    with harness.runtime.sessions() as session, session.begin():
        ticket = session.scalars(select(Ticket)).one()
        savepoint = session.begin_nested()
        ticket.status = "resolved"
        assert write_changes(session) == 1
        savepoint.rollback()
        assert ticket.status == "new", "the object forgets what its rolled-back UPDATE wrote"


def test_a_row_read_directly_becomes_the_sessions_object_or_the_one_it_holds(harness):
    from sqlalchemy import inspect as inspect_state

    from mailgate.storage import direct
    from mailgate.storage.models import Customer
    from mailgate.storage.rows import loaded, table

    by_address = select(*table(Customer).columns).where(table(Customer).c.address == "ann@customer.example")
    with harness.session() as session, session.begin():
        session.add(Customer(address="ann@customer.example", name="Ann", created_at=datetime.now(UTC)))
    with harness.session() as session, session.begin():
        [row] = direct.read(session, by_address, {})
        ann = loaded(session, Customer, row)
        state = inspect_state(ann)
        assert state.persistent and not state.modified and state.unloaded == set()
        assert (ann.address, ann.name) == ("ann@customer.example", "Ann")
        assert ann.created_at.tzinfo is not None
        assert loaded(session, Customer, row) is ann  # the session's one object for that row
        assert session.get(Customer, ann.id) is ann
        ann.name = "Ann B."
        session.flush()
    with harness.session() as session:
        assert session.scalar(select(Customer.name)) == "Ann B."


def test_a_row_with_an_id_taken_before_is_written_with_it_and_is_the_sessions_object(harness):
    from mailgate.storage import direct
    from mailgate.storage.rows import next_ids

    with harness.session() as session, session.begin():
        if session.connection().dialect.name == "postgresql":
            [(first, second)] = direct.read(session, next_ids(Customer, Customer), {})
            assert second > first  # each call of nextval its own number
            new_id = second
        else:
            new_id = 77  # any free id is written as given
        customer = Customer(address="eve@customer.example", name="Eve", created_at=datetime.now(UTC))
        assert insert_now(session, customer, new_id=new_id)
        assert customer.id == new_id and session.get(Customer, new_id) is customer
    with harness.session() as session:
        assert session.scalar(select(Customer.id).where(Customer.address == "eve@customer.example")) == new_id


def test_an_object_made_without_its_constructor_is_written_and_loaded_as_one_made_with_it(harness):
    with harness.runtime.sessions() as session, session.begin():
        made = rows.new(Customer, address="new@customer.example", created_at=NOW)
        built = Customer(address="ctor@customer.example", created_at=NOW)
        for customer in (made, built):
            insert_now(session, customer)
        assert made in session and not session.new and not session.dirty
        assert (made.name, made.address) == ("", "new@customer.example"), "the column's default is set, as by the ctor"
        assert session.get(Customer, made.id) is made
        made.name = "Nell"  # its changes are tracked like any loaded object's
        session.flush()
        names = dict(session.connection().execute(select(Customer.address, Customer.name)).all())
    assert names == {"new@customer.example": "Nell", "ctor@customer.example": ""}


def test_an_object_is_made_of_columns_only():
    with pytest.raises(TypeError, match="not columns of Ticket"):
        rows.new(Ticket, number=1, customer=None)  # a relationship is linked after, with set_committed_value
    with pytest.raises(TypeError, match="not columns of Customer"):
        rows.new(Customer, adress="typo@customer.example")


def test_a_ticket_is_found_by_its_number_or_id_as_the_orm_finds_it_with_one_select(harness):
    from mailgate.storage import threads

    with harness.runtime.sessions() as session, session.begin():
        written = _ticket(session, 7)
        session.add(written)
        session.flush()
        ticket_id = written.id
    with harness.runtime.sessions() as session, session.begin():
        statements: list[str] = []
        event.listen(session.connection(), "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))
        found = threads.by_token(session, "Re: Printer [#7]", "")
        assert found is session.get(Ticket, ticket_id), "the session's own object, as a query gives it"
        assert (found.number, found.subject, found.customer.address) == (7, "s", "c7@customer.example")
        assert threads.ticket_by_id(session, ticket_id) is found and len(statements) == 2, "held: no SELECT"
        assert threads.ticket_by_id(session, ticket_id + 1) is None
        assert threads.by_token(session, "Re: Printer [#8]", "") is None
        pending = _ticket(session, 9)
        session.add(pending)
        assert threads.by_token(session, "[#9]", "") is pending, "a ticket added but not written is found too"
