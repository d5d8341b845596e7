"""Writes through the driver's cursor (mailgate.storage.direct) store what SQLAlchemy's execution would.

Each promise here is one the callers rely on: the bind processing (aware times, JSON), the engine's
listeners, SQLAlchemy's exceptions, and the statements that need SQLAlchemy's execution still getting it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, event, exc, func, insert, literal, select, update

from mailgate.storage import db, direct
from mailgate.storage.models import Counter, Event
from mailgate.storage.rows import table
from tests import fresh_database

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
        direct.flush(conn)  # on PostgreSQL it waited in the queue
    assert raised.value.orig is not None and type(raised.value.orig).__module__.split(".")[0] in {"sqlite3", "psycopg"}


def test_a_column_default_not_given_is_applied_through_sqlalchemy(engine):
    """actor and detail have Python-side defaults: the statement runs through SQLAlchemy's execution."""
    with engine.begin() as conn:
        new_id = direct.write(
            conn, NUMBERED, {"ticket_id": None, "message_pk": None, "kind": "bare", "created_at": datetime.now(UTC)}
        )
    with engine.connect() as conn:
        assert conn.execute(select(Event.actor, Event.detail).where(Event.id == new_id)).one() == ("", {})


READ = select(Event.id, Event.created_at, Event.detail, literal(True).label("flag")).where(
    Event.kind == bindparam("kind")
)


def test_a_read_gives_the_rows_sqlalchemys_execution_gives(engine):
    """Aware times, JSON and booleans come back processed, as the callers' columns would from a Result."""
    when = datetime(2026, 12, 2, 23, 30, 5, 123456, tzinfo=UTC)
    with engine.begin() as conn:
        for n in range(3):
            direct.write(conn, EVENTS, an_event(kind="read", detail={"n": n}, created_at=when))
        expected = [tuple(row) for row in conn.execute(READ, {"kind": "read"})]
        assert direct.read(conn, READ, {"kind": "read"}) == expected
        assert direct.read(conn, READ, {"kind": "none"}) == []
    assert [row[2] for row in expected] == [{"n": 0}, {"n": 1}, {"n": 2}] and expected[0][1] == when
    assert expected[0][3] is True


def test_a_read_with_a_list_to_expand_runs_through_sqlalchemy(engine):
    listed = select(Event.kind).where(Event.kind.in_(bindparam("kinds", expanding=True))).order_by(Event.id)
    with engine.begin() as conn:
        direct.write(conn, EVENTS, an_event(kind="a", detail={}, created_at=datetime.now(UTC)))
        direct.write(conn, EVENTS, an_event(kind="b", detail={}, created_at=datetime.now(UTC)))
        assert direct.read(conn, listed, {"kinds": ["a", "b", "c"]}) == [("a",), ("b",)]


def test_an_insert_of_sqlite_gives_the_new_rowid_or_none_when_it_wrote_nothing(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's rowid")
    from sqlalchemy.dialects import sqlite

    heads = sqlite.insert(table(Counter)).on_conflict_do_nothing(index_elements=["name"])
    with engine.begin() as conn:
        first = direct.write(conn, EVENTS, an_event(detail={}, created_at=datetime.now(UTC)), new_rowid=True)
        second = direct.write(conn, EVENTS, an_event(detail={}, created_at=datetime.now(UTC)), new_rowid=True)
        assert second == first + 1
        assert conn.scalar(select(func.max(Event.id))) == second
        assert direct.write(conn, heads, {"name": "ticket", "value": 5}, new_rowid=True) is None  # the row exists


# On PostgreSQL the writes that return nothing wait in the connection's queue and share the round trip
# of the next statement (a pipeline): each promise below is one a reader or the batch logic relies on.

fresh_pg_url = fresh_database.fresh_pg_url  # a fixture: a database of its own


@pytest.fixture
def pg(fresh_pg_url):
    engine = db.make_engine(fresh_pg_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def kinds(conn) -> list[str]:
    return list(conn.scalars(select(Event.kind).order_by(Event.id)))


def test_a_queued_write_is_sent_before_the_next_statement_which_sees_it(pg):
    sent: list[str] = []
    event.listen(pg, "before_cursor_execute", lambda _c, _cur, sql, *_a: sent.append(sql.split()[0]))
    with pg.connect() as conn, conn.begin():
        direct.write(conn, EVENTS, an_event(kind="first", detail={}, created_at=datetime.now(UTC)))
        direct.write(conn, EVENTS, an_event(kind="second", detail={}, created_at=datetime.now(UTC)))
        assert "INSERT" not in sent, "both wait for the next statement"
        assert kinds(conn) == ["first", "second"]
        assert sent[-3:] == ["INSERT", "INSERT", "SELECT"]


def test_a_write_with_returning_goes_in_the_same_pipeline_after_the_queue(pg):
    with pg.connect() as conn, conn.begin():
        direct.write(conn, EVENTS, an_event(kind="queued", detail={}, created_at=datetime.now(UTC)))
        new_id = direct.write(conn, NUMBERED, an_event(kind="numbered", detail={}, created_at=datetime.now(UTC)))
        assert conn.scalar(select(Event.kind).where(Event.id == new_id)) == "numbered"
        assert kinds(conn) == ["queued", "numbered"]


def test_a_commit_sends_the_queue_and_a_rollback_drops_it(pg):
    with pg.connect() as conn:
        with conn.begin():
            direct.write(conn, EVENTS, an_event(kind="kept", detail={}, created_at=datetime.now(UTC)))
        transaction = conn.begin()
        direct.write(conn, EVENTS, an_event(kind="dropped", detail={}, created_at=datetime.now(UTC)))
        transaction.rollback()
        with conn.begin():
            direct.write(conn, EVENTS, an_event(kind="after", detail={}, created_at=datetime.now(UTC)))
    with pg.connect() as conn:
        assert kinds(conn) == ["kept", "after"]


def test_a_savepoint_rolled_back_drops_what_was_queued_inside_it_and_a_released_one_keeps_it(pg):
    with pg.connect() as conn:
        with conn.begin():
            direct.write(conn, EVENTS, an_event(kind="before", detail={}, created_at=datetime.now(UTC)))
            savepoint = conn.begin_nested()
            direct.write(conn, EVENTS, an_event(kind="inside", detail={}, created_at=datetime.now(UTC)))
            savepoint.rollback()
            with conn.begin_nested():
                direct.write(conn, EVENTS, an_event(kind="released", detail={}, created_at=datetime.now(UTC)))
        assert kinds(conn) == ["before", "released"]


def test_an_error_in_a_queued_write_is_raised_by_the_flush_as_sqlalchemys(pg):
    with pg.connect() as conn, conn.begin():
        direct.write(conn, insert(table(Counter)), {"name": "ticket", "value": 7})  # the row exists: a conflict
        with pytest.raises(exc.IntegrityError) as raised:
            direct.flush(conn)
        assert type(raised.value.orig).__module__.startswith("psycopg")


def test_read_many_gives_each_selects_rows_processed_and_sees_the_writes_queued_before_it(engine):
    when = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    kinds = select(Event.kind).where(Event.actor == bindparam("actor")).order_by(Event.id)
    times = select(Event.created_at, Event.detail).where(Event.kind == bindparam("kind"))
    with engine.begin() as conn:
        direct.write(conn, EVENTS, an_event(kind="first", detail={"n": 1}, created_at=when))  # queued on PostgreSQL
        direct.write(conn, EVENTS, an_event(kind="second", detail=None, created_at=when))
        by_actor, by_kind, nobody = direct.read_many(
            conn, [(kinds, {"actor": "bob@example.com"}), (times, {"kind": "first"}), (kinds, {"actor": "x"})]
        )
    assert by_actor == [("first",), ("second",)]
    [(created_at, detail)] = by_kind
    assert created_at == when and created_at.tzinfo is not None and detail == {"n": 1}
    assert nobody == []


def test_read_many_is_one_round_trip_with_the_queued_writes(engine):
    seen: list[int] = []
    real = direct._run

    def run(conn, items, **kw):
        seen.append(len(items))
        return real(conn, items, **kw)

    kinds = select(Event.kind).where(Event.actor == bindparam("actor"))
    with engine.begin() as conn, pytest.MonkeyPatch.context() as patch:
        patch.setattr(direct, "_run", run)
        direct.write(conn, EVENTS, an_event(kind="queued", detail={}, created_at=datetime.now(UTC)))
        queued = direct.queues_writes(conn)
        direct.read_many(conn, [(kinds, {"actor": "a"}), (kinds, {"actor": "b"})])
    assert seen == ([3] if queued else [1, 2])
