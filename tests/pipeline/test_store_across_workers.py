"""Two worker processes' batches that meet a new customer at once: neither fails, both name one row.

Mails are shared out by conversation, so one customer's two new questions may be in two workers'
open batches together. A plain INSERT of the customer failed the second batch's mail with a
unique violation once the first committed; the mail went back to the spool to wait for a retry.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import func, select

from mailgate.pipeline.steps.store import get_or_create_customer
from mailgate.storage import db
from mailgate.storage.models import Customer
from tests import fresh_database

fresh_pg_url = fresh_database.fresh_pg_url  # a fixture: a database of its own


def test_a_customer_added_by_another_open_batch_is_found_once_it_commits(fresh_pg_url):
    engine = db.make_engine(fresh_pg_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    now = datetime.now(UTC)
    found: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    first = sessions()
    first.begin()
    mine = get_or_create_customer(first, "carol@customer.example", "Carol", now)

    def second_batch() -> None:
        try:
            with sessions() as session, session.begin():
                theirs = get_or_create_customer(session, "carol@customer.example", "", now)
                found.append((theirs.id, theirs.name))
        except BaseException as exc:  # the test's thread: report it to the test
            errors.append(exc)

    thread = threading.Thread(target=second_batch)
    thread.start()
    thread.join(timeout=0.5)  # it waits for the first batch: PostgreSQL cannot tell yet whether it conflicts
    assert not found
    first.commit()
    first.close()
    thread.join(timeout=60)

    assert errors == []
    assert found == [(mine.id, "Carol")]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Customer)) == 1
    engine.dispose()


def test_a_customer_of_a_batch_that_rolls_back_is_added_by_the_other(fresh_pg_url):
    engine = db.make_engine(fresh_pg_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    now = datetime.now(UTC)
    found: list[str] = []

    first = sessions()
    first.begin()
    get_or_create_customer(first, "dave@customer.example", "Dave", now)

    def second_batch() -> None:
        with sessions() as session, session.begin():
            found.append(get_or_create_customer(session, "dave@customer.example", "D.", now).name)

    thread = threading.Thread(target=second_batch)
    thread.start()
    thread.join(timeout=0.5)
    first.rollback()
    first.close()
    thread.join(timeout=60)

    assert found == ["D."]
    with engine.connect() as conn:
        assert conn.scalars(select(Customer.name)).all() == ["D."]
    engine.dispose()
