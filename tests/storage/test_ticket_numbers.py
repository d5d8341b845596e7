"""Ticket numbers: on PostgreSQL from a sequence, so two open batch transactions never wait for each other.

The counter row's lock lasted until the commit: a second worker that opened a ticket waited for the first
worker's whole batch. Each test here fails on that code (it meets the lock timeout instead).
"""

from __future__ import annotations

from sqlalchemy import select, text, update

from mailgate.pipeline.steps.store import next_ticket_number
from mailgate.storage import db
from mailgate.storage.models import Counter
from tests import fresh_database

fresh_pg_url = fresh_database.fresh_pg_url  # a fixture: a database of its own


def _sessions(url: str):
    engine = db.make_engine(url)
    db.upgrade(engine)
    return engine, db.make_sessionmaker(engine)


def test_two_open_transactions_take_numbers_without_waiting_for_each_other(fresh_pg_url):
    engine, sessions = _sessions(fresh_pg_url)
    with sessions() as first, sessions() as second, first.begin(), second.begin():
        second.execute(text("SET LOCAL lock_timeout = '5s'"))  # the old counter row would wait, then raise
        a = next_ticket_number(first)
        b = next_ticket_number(second)  # while the first transaction is still open
        c = next_ticket_number(first)
    assert (a, b, c) == (1, 2, 3)
    engine.dispose()


def test_a_number_of_a_rolled_back_transaction_is_not_given_again(fresh_pg_url):
    engine, sessions = _sessions(fresh_pg_url)
    with sessions() as session:
        with session.begin():
            assert next_ticket_number(session) == 1
            session.rollback()
        with session.begin():
            assert next_ticket_number(session) == 2, "numbers may skip; no two tickets share one"
    engine.dispose()


def test_an_upgraded_installation_continues_from_its_counter(fresh_pg_url):
    engine = db.make_engine(fresh_pg_url)
    db.upgrade(engine, "0005_reading")
    with engine.begin() as conn:
        conn.execute(update(Counter).where(Counter.name == "ticket").values(value=41))
    db.upgrade(engine)
    with db.make_sessionmaker(engine)() as session, session.begin():
        assert next_ticket_number(session) == 42
    engine.dispose()


def test_a_downgrade_leaves_the_counter_at_the_last_number_given(fresh_pg_url):
    engine, sessions = _sessions(fresh_pg_url)
    with sessions() as session, session.begin():
        for _ in range(7):
            next_ticket_number(session)
    db.downgrade(engine, "0005_reading")
    with engine.connect() as conn:
        assert conn.scalar(select(Counter.value).where(Counter.name == "ticket")) == 7
    engine.dispose()


def test_sqlite_keeps_numbering_with_its_counter_row(tmp_path):
    taken = 3
    engine, sessions = _sessions(f"sqlite:///{tmp_path / 'mailgate.sqlite3'}")
    with sessions() as session, session.begin():
        numbers = [next_ticket_number(session) for _ in range(taken)]
    with engine.connect() as conn:
        assert conn.scalar(select(Counter.value).where(Counter.name == "ticket")) == taken
    assert numbers == [1, 2, 3]
    engine.dispose()
