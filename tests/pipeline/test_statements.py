"""A mail costs as few statements as its rows need: each is a round trip on PostgreSQL.

A mail takes no savepoint (its batch runs without one until a mail fails, and the
acknowledgment is made before anything of it is written), and dedupe reads the stored mails and
the Message-ID index in one statement. An acknowledgment that cannot be made still leaves the
mail stored, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select

from mailgate.mail import compose
from mailgate.storage.models import Event, Message, Outbox
from tests.helpers import make_mail


@contextmanager
def _statements(harness) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()))

    engine = harness.runtime.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_new_tickets_mail_and_its_acknowledgment_take_no_savepoint(harness):
    with _statements(harness) as seen:
        harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))

    with harness.session() as session:
        [kind] = session.scalars(select(Outbox.kind)).all()
    assert kind == "acknowledgment"
    assert [s for s in seen if "SAVEPOINT" in s] == []


def test_dedupe_reads_stored_mails_and_the_index_in_one_statement(harness):
    with _statements(harness) as seen:
        harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))

    statements = [s for s in seen if not s.startswith("BEGIN")]
    reads = [s for s in statements if "messages.dedupe_key" in s or "FROM message_refs" in s]
    assert len(reads) == 1, reads
    assert "FROM messages" in reads[0] and "FROM message_refs" in reads[0]
    assert statements[0] == reads[0], "the mail's first statement"


def test_a_message_id_known_from_another_mail_is_still_noticed_in_that_one_statement(harness):
    harness.deliver(make_mail(subject="Printer on fire", msgid="<same@customer.example>", body="first"))
    harness.deliver(make_mail(subject="Toner", msgid="<same@customer.example>", body="another mail"))

    with harness.session() as session:
        kinds = session.scalars(select(Event.kind).where(Event.kind == "message.id_collision")).all()
        assert kinds == ["message.id_collision"]
        assert len(session.scalars(select(Message.id)).all()) == 2


def test_an_acknowledgment_that_cannot_be_made_leaves_the_mail_stored_and_says_why(harness, monkeypatch):
    def broken(mail):
        raise RuntimeError("no bytes today")

    monkeypatch.setattr(compose, "compose", broken)
    harness.deliver(make_mail(subject="Printer on fire", msgid="<fire@customer.example>"))

    with harness.session() as session:
        assert session.scalars(select(Message.message_id)).all() == ["<fire@customer.example>"]
        assert session.scalars(select(Outbox)).all() == []
        held = session.scalars(select(Event).where(Event.kind == "mail.held")).all()
    assert [(e.detail["mail_kind"], e.detail["reason"]) for e in held] == [
        ("acknowledgment", "error: RuntimeError: no bytes today")
    ]


@contextmanager
def _round_trips(monkeypatch) -> Iterator[list[list[str]]]:
    """The statements of each round trip through mailgate.storage.direct (one pipeline on PostgreSQL)."""
    from mailgate.storage import direct

    trips: list[list[str]] = []
    real = direct._run

    def run(conn, items, **kw):
        trips.append([" ".join(plan.sql.split()) for plan, _parameters, _many in items])
        return real(conn, items, **kw)

    monkeypatch.setattr(direct, "_run", run)
    yield trips


def test_a_new_ticket_reads_its_number_and_its_customer_in_one_round_trip(harness, monkeypatch):
    with _round_trips(monkeypatch) as trips:
        harness.deliver(make_mail(subject="Printer on fire", sender="Dora <dora@customer.example>"))

    [shared] = [trip for trip in trips if any("FROM customers" in s for s in trip)]
    assert any("nextval" in s or "FROM counters" in s for s in shared), shared
    if harness.runtime.engine.dialect.name == "postgresql":  # and the raw mail's blob rows go with them
        assert [s.split()[:3] for s in shared[:2]] == [["INSERT", "INTO", "blobs"], ["INSERT", "INTO", "blob_chunks"]]


def test_on_postgresql_a_new_tickets_rows_wait_for_the_next_round_trip_with_their_ids_taken_before(
    harness, monkeypatch
):
    if harness.runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no round trips: its ids are the new rowids")
    with _round_trips(monkeypatch) as trips:
        harness.deliver(make_mail(subject="Printer on fire", sender="Dora <dora@customer.example>"))

    [taken] = [trip for trip in trips if any("FROM customers" in s for s in trip)]
    assert "tickets_id_seq" not in taken[-1] and "nextval" in taken[-1]  # the ids: bound, read with the number
    inserts = {s.split()[2]: (i, s) for i, trip in enumerate(trips) for s in trip if s.startswith("INSERT INTO")}
    for table in ("tickets", "messages"):
        index, statement = inserts[table]
        assert "RETURNING" not in statement and "(id," in statement.split("VALUES")[0], statement
        assert len(trips[index]) > 1, "queued, it went out with the statement after it"
    with harness.session() as session:
        from mailgate.storage.models import Ticket

        ticket = session.scalars(select(Ticket)).one()
        assert [m.subject for m in ticket.messages] == ["Printer on fire"]
        assert ticket.customer.address == "dora@customer.example"


def test_on_postgresql_an_acknowledgment_row_is_written_whole_with_the_return_path_of_its_id(harness, monkeypatch):
    if harness.runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the id is the new rowid, then the return path is set")
    from mailgate.outbound.bounces import verp_address
    from mailgate.outbound.plugin import state

    with _round_trips(monkeypatch) as trips:
        harness.deliver(make_mail(subject="Printer on fire", sender="Dora <dora@customer.example>"))

    statements = [s for trip in trips for s in trip]
    assert not [s for s in statements if s.startswith("UPDATE outbox")]
    [insert] = [s for s in statements if s.startswith("INSERT INTO outbox")]
    assert "RETURNING" not in insert
    [counts_trip] = [trip for trip in trips if any("count(*)" in s for s in trip)]
    assert "AS outbox" in counts_trip[-1], "the row's id is taken with the loop guard's counts"
    with harness.session() as session:
        row = session.scalars(select(Outbox)).one()
        key, support = state(harness.runtime.services).key, harness.runtime.config.support.address
        assert row.kind == "acknowledgment" and row.mail_from == verp_address(key, support, row.id)


def test_on_postgresql_a_follow_ups_row_takes_its_id_with_the_dedupe_lookup(harness, monkeypatch):
    if harness.runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the id is the new rowid")
    harness.deliver(make_mail(subject="Printer on fire", msgid="<first@customer.example>"))
    with _round_trips(monkeypatch) as trips:
        harness.deliver(
            make_mail(
                subject="Re: Printer on fire", msgid="<second@customer.example>", in_reply_to="<first@customer.example>"
            )
        )

    assert "AS messages" in trips[0][-1], "the first round trip takes the row's id"
    [insert] = [s for trip in trips for s in trip if s.startswith("INSERT INTO messages")]
    assert "RETURNING" not in insert and "(id," in insert
    with harness.session() as session:
        from mailgate.storage.models import Ticket

        ticket = session.scalars(select(Ticket)).one()
        assert [m.message_id for m in ticket.messages] == ["<first@customer.example>", "<second@customer.example>"]
