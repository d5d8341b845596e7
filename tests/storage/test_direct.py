"""Writes through the driver's cursor (mailgate.storage.direct) store what SQLAlchemy's execution would.

Each promise here is one the callers rely on: the bind processing (aware times, JSON), the engine's
listeners, SQLAlchemy's exceptions, and the statements that need SQLAlchemy's execution still getting it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, exc, insert, select, update

from mailgate.storage import db, direct
from mailgate.storage.models import Counter, Event
from mailgate.storage.rows import table

EVENTS = insert(table(Event))
NUMBERED = insert(table(Event)).returning(table(Event).c.id)
TAKE = update(table(Counter)).where(Counter.name == "ticket").values(value=Counter.value + 1).returning(Counter.value)


@pytest.fixture
def engine(db_url):
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def an_event(**values):
    return {"ticket_id": None, "message_pk": None, "kind": "note", "actor": "bob@example.com"} | values


def test_an_insert_stores_aware_times_and_json_as_sqlalchemy_would(engine):
    when = datetime(2026, 12, 2, 23, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        new_id = direct.write(conn, NUMBERED, an_event(detail={"why": "é", "n": [1, 2]}, created_at=when))
    with db.make_sessionmaker(engine)() as session:
        stored = session.get(Event, new_id)
        assert stored is not None
        assert stored.detail == {"why": "é", "n": [1, 2]}
        assert stored.created_at == when and stored.created_at.tzinfo is not None
        assert stored.created_at.astimezone(UTC) == when.astimezone(UTC)


def test_write_many_stores_every_row_in_order(engine):
    now = datetime.now(UTC)
    rows = [an_event(kind=f"k{i}", detail={"i": i}, created_at=now) for i in range(5)]
    with engine.begin() as conn:
        direct.write_many(conn, EVENTS, rows)
    with engine.connect() as conn:
        found = conn.execute(select(Event.kind, Event.detail).order_by(Event.id)).all()
    assert [(kind, detail["i"]) for kind, detail in found] == [(f"k{i}", i) for i in range(5)]


def test_values_bound_in_the_statement_itself_are_sent(engine):
    with engine.begin() as conn:
        before = conn.scalar(select(Counter.value).where(Counter.name == "ticket"))
        assert direct.write(conn, TAKE, {}) == before + 1
        assert direct.write(conn, TAKE, {}) == before + 2


def test_the_engines_listeners_see_each_statement(engine):
    seen: list[tuple[str, bool]] = []

    def before(_conn, _cursor, statement, _parameters, _context, many):
        seen.append((statement.split()[0], many))

    event.listen(engine, "before_cursor_execute", before)
    try:
        with engine.begin() as conn:
            direct.write(conn, NUMBERED, an_event(detail={}, created_at=datetime.now(UTC)))
            direct.write_many(conn, EVENTS, [an_event(detail={}, created_at=datetime.now(UTC))] * 2)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert ("INSERT", False) in seen and ("INSERT", True) in seen


def test_a_driver_error_is_sqlalchemys_with_the_drivers_as_orig(engine):
    duplicate = insert(table(Counter))
    with engine.connect() as conn, conn.begin(), pytest.raises(exc.IntegrityError) as raised:
        direct.write(conn, duplicate, {"name": "ticket", "value": 7})
    assert raised.value.orig is not None and type(raised.value.orig).__module__.split(".")[0] in {"sqlite3", "psycopg"}


def test_a_column_default_not_given_is_applied_through_sqlalchemy(engine):
    """actor and detail have Python-side defaults: the statement runs through SQLAlchemy's execution."""
    with engine.begin() as conn:
        new_id = direct.write(
            conn, NUMBERED, {"ticket_id": None, "message_pk": None, "kind": "bare", "created_at": datetime.now(UTC)}
        )
    with engine.connect() as conn:
        assert conn.execute(select(Event.actor, Event.detail).where(Event.id == new_id)).one() == ("", {})
