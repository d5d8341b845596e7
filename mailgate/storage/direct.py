"""Writes of the hot path through the driver's cursor, with the SQL and bind processing SQLAlchemy compiled.

Each Core execution costs ~30 µs of SQLAlchemy's own (an execution context, the compiled-cache lookup,
parameter construction, a result object) around ~10 µs of the driver's, and every mail writes a
dozen rows. The statement here is compiled once for each dialect and set of value keys: its SQL
string, the order of its parameters, and each parameter's bind processor, as SQLAlchemy would apply
it (aware datetimes, JSON). What a cursor execution skips and this keeps:

* the engine's ``before_cursor_execute`` / ``after_cursor_execute`` listeners still see each
  statement (the statement-count tests rely on it);
* a driver error comes out as SQLAlchemy's ``DBAPIError`` subclass with the driver's as ``orig``, so
  outage detection (:mod:`mailgate.ops.health`) and callers catching ``IntegrityError`` work as before.

What would need SQLAlchemy's execution is refused at compile time and runs through it instead: a
Python-side column default not given a value, an expanding, literal-rendered or callable
parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Insert, Select, Update, event, exc
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import Session

Statement = Insert | Update
Query = Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]]


@dataclass(frozen=True)
class _Compiled:
    statement: Statement | Query  # kept, so a cache hit is this very statement (not one that reused its id)
    sql: str
    names: tuple[str, ...]  # the parameters in the order the SQL takes them
    fixed: tuple[Any, ...]  # for each, the value bound in the statement itself (when not given)
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    returns: bool = False  # it has RETURNING, or it is a SELECT: it is never queued
    results: tuple[Callable[[Any], Any] | None, ...] = ()  # each result column's processor, as SQLAlchemy's
    usable: bool = True  # False: the statement runs through SQLAlchemy's execution (see the module's doc)


_CACHE: dict[tuple[int, str, tuple[str, ...]], _Compiled] = {}


def _compile(statement: Statement | Query, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    returns = isinstance(statement, Select | CompoundSelect) or bool(statement.returning_column_descriptions)
    if isinstance(statement, Insert) and not returns:
        statement_sent: Statement | Query = statement.inline()  # no RETURNING of the new id that nobody reads
    else:
        statement_sent = statement
    compiled: Any = statement_sent.compile(dialect=dialect, column_keys=list(keys))
    refused = bool(compiled.insert_prefetch or compiled.update_prefetch or compiled.literal_execute_params)
    refused = refused or any(bind.expanding or bind.callable is not None for bind in compiled.binds.values())
    if refused:  # a Python-side default to compute, or SQL to render for each execution
        return _Compiled(statement, "", (), (), (), positional=False, usable=False)
    names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.bind_names.values())
    binds = [compiled.binds[name] for name in names]
    return _Compiled(
        statement=statement,
        sql=compiled.string,
        names=names,
        fixed=tuple(bind.value for bind in binds),
        processors=tuple(bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds),
        positional=bool(compiled.positional),
        returns=returns,
        results=tuple(column.type._cached_result_processor(dialect, None) for column in compiled._result_columns),
    )


def _plan(statement: Statement | Query, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled | None:
    """``keys`` in the caller's order, not sorted: a call site always gives the same (its own entry)."""
    cache_key = (id(statement), dialect.name, keys)
    plan = _CACHE.get(cache_key)
    if plan is None or plan.statement is not statement:
        plan = _CACHE[cache_key] = _compile(statement, dialect, keys)
    return plan if plan.usable else None


def _bound(plan: _Compiled, values: Mapping[str, Any]) -> Any:
    row = []
    for name, fixed, process in zip(plan.names, plan.fixed, plan.processors, strict=True):
        value = values.get(name, fixed)
        row.append(process(value) if process is not None else value)
    return tuple(row) if plan.positional else dict(zip(plan.names, row, strict=True))


def write(
    session: Session | Connection,
    statement: Statement,
    values: Mapping[str, Any],
    *,
    defer: bool = True,
    new_rowid: bool = False,
) -> Any:
    """Execute one INSERT or UPDATE; the first column of its first row (an id from RETURNING), else None.

    Only for values the returned column needs no result processing for (integer ids). On PostgreSQL a
    statement that returns nothing waits in the connection's queue (see :func:`defer_on`), unless
    ``defer`` is False: a big value (a blob's chunk) is sent at once, so the queue never holds a file.

    ``new_rowid`` (SQLite, an INSERT of one row without RETURNING): the new row's rowid, or None when
    it wrote nothing (ON CONFLICT DO NOTHING). RETURNING makes SQLite run the statement in a statement
    savepoint, and FTS5 writes its pending terms out at every savepoint (migration 0009).
    """
    conn = session.connection() if isinstance(session, Session) else session
    plan = _plan(statement, conn.dialect, tuple(values))
    if plan is None:
        result = conn.execute(statement, dict(values))
        if new_rowid:
            return result.lastrowid if result.rowcount == 1 else None
        row = result.first()
        return row[0] if row is not None else None
    item = (plan, _bound(plan, values), False)
    if defer and not new_rowid and not plan.returns and _deferring(conn):
        _queue(conn).append(item)
        return None
    return _run(conn, [*_taken(conn), item], new_rowid=new_rowid)


def read(session: Session | Connection, statement: Query, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Execute one SELECT and return its rows as tuples, each value processed as SQLAlchemy's result would.

    For the few reads every mail makes (dedupe, the sender lists, the loop guard's counts): compiling
    the statement's cache key each time costs as much as the read itself. Nothing is flushed first:
    the caller reads rows that are written at once (Core or ``insert_now``), not pending ORM objects.
    """
    conn = session.connection() if isinstance(session, Session) else session
    plan = _plan(statement, conn.dialect, tuple(values))
    if plan is None:
        return [tuple(row) for row in conn.execute(statement, dict(values))]
    rows: list[tuple[Any, ...]] = _run(conn, [*_taken(conn), (plan, _bound(plan, values), False)], fetch_all=True)
    return _processed(plan, rows)


def read_many(
    session: Session | Connection, queries: Sequence[tuple[Query, Mapping[str, Any]]]
) -> list[list[tuple[Any, ...]]]:
    """Execute several SELECTs, on PostgreSQL in one round trip (with the queued writes before them): the
    rows of each, as :func:`read` gives them. For reads that do not depend on each other's answers."""
    conn = session.connection() if isinstance(session, Session) else session
    plans = [_plan(statement, conn.dialect, tuple(values)) for statement, values in queries]
    usable = [plan for plan in plans if plan is not None]
    if len(usable) < len(plans):
        return [read(conn, statement, values) for statement, values in queries]
    items = [(plan, _bound(plan, values), False) for plan, (_statement, values) in zip(usable, queries, strict=True)]
    found: list[list[tuple[Any, ...]]] = _run(conn, [*_taken(conn), *items], fetch_last=len(items))
    return [_processed(plan, rows) for plan, rows in zip(usable, found, strict=True)]


def _processed(plan: _Compiled, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    if any(plan.results):
        pairs = tuple(enumerate(plan.results))
        return [tuple(p(row[i]) if p is not None else row[i] for i, p in pairs) for row in rows]
    return rows


def write_many(session: Session | Connection, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute one INSERT for each of ``rows`` (all with the same keys), as the driver's executemany."""
    if not rows:
        return
    conn = session.connection() if isinstance(session, Session) else session
    plan = _plan(statement, conn.dialect, tuple(rows[0]))
    if plan is None:
        conn.execute(statement, [dict(row) for row in rows])
        return
    item = (plan, [_bound(plan, row) for row in rows], True)
    if not plan.returns and _deferring(conn):
        _queue(conn).append(item)
        return
    _run(conn, [*_taken(conn), item])


def flush(session: Session | Connection) -> None:
    """Send the writes waiting in the queue now (the pipeline calls it at the end of each mail, so an
    error of one of them is that mail's)."""
    conn = session.connection() if isinstance(session, Session) else session
    items = _taken(conn)
    if items:
        _run(conn, items)


# On PostgreSQL each statement is a round trip (~0.1 ms of waiting, and a wake-up of both processes),
# and most of a mail's writes return nothing: an event, a Message-ID index entry, a blob's chunk, the
# outbox row's return path. Those wait in the connection's queue and go out in one pipeline, together
# with the next statement whatever it is, before it: every read sees every write made before it.
_QUEUE = "mailgate.direct.queue"
_DEFERS = "mailgate_defers_writes"  # an engine's dialect option: set by defer_on


def defer_on(engine: Engine) -> None:
    """Queue the writes that return nothing (PostgreSQL); the queue goes out before any other statement
    and before a commit, and is dropped by a rollback (a rollback to a savepoint drops what was queued
    since the last statement, which is inside that savepoint)."""
    setattr(engine.dialect, _DEFERS, True)

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if not conn.connection.info.get(_QUEUE):
            return
        if statement.lstrip().upper().startswith("ROLLBACK TO SAVEPOINT"):
            _taken(conn)
            return
        flush(conn)

    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        flush(conn)

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Connection) -> None:
        with contextlib.suppress(Exception):  # a connection already gone has no queue to drop
            _taken(conn)


def queues_writes(conn: Connection) -> bool:
    """Whether writes that return nothing wait in the connection's queue (see :func:`defer_on`)."""
    return _deferring(conn)


def _deferring(conn: Connection) -> bool:
    return bool(getattr(conn.dialect, _DEFERS, False))


def _queue(conn: Connection) -> list[tuple[_Compiled, Any, bool]]:
    queue: list[tuple[_Compiled, Any, bool]] = conn.connection.info.setdefault(_QUEUE, [])
    return queue


def _taken(conn: Connection) -> list[tuple[_Compiled, Any, bool]]:
    taken: list[tuple[_Compiled, Any, bool]] = conn.connection.info.pop(_QUEUE, None) or []
    return taken


def _run(
    conn: Connection,
    items: Sequence[tuple[_Compiled, Any, bool]],
    *,
    new_rowid: bool = False,
    fetch_all: bool = False,
    fetch_last: int = 0,
) -> Any:
    """Execute ``items`` in order (in one pipeline when there are several); the last one's first value
    (``new_rowid``: the rowid it inserted, None when it inserted nothing; ``fetch_all``: all its rows;
    ``fetch_last``: a list of all the rows of each of that many last items)."""
    dbapi_connection: Any = conn.connection.dbapi_connection
    cursors = [dbapi_connection.cursor() for _ in items]
    try:
        for plan, parameters, many in items:
            for listener in conn.dispatch.before_cursor_execute:
                listener(conn, cursors[0], plan.sql, parameters, None, many)
        try:
            several = len(items) > 1 and hasattr(dbapi_connection, "pipeline")  # psycopg; SQLite has no round trips
            with dbapi_connection.pipeline() if several else contextlib.nullcontext():
                for cursor, (plan, parameters, many) in zip(cursors, items, strict=True):
                    if many:
                        cursor.executemany(plan.sql, parameters)
                    else:
                        cursor.execute(plan.sql, parameters)
                last, (plan, _parameters, many) = cursors[-1], items[-1]
                if fetch_last:
                    result: Any = [[tuple(row) for row in cursor.fetchall()] for cursor in cursors[-fetch_last:]]
                elif fetch_all:
                    result = [tuple(row) for row in last.fetchall()]
                elif new_rowid:
                    result = last.lastrowid if last.rowcount == 1 else None
                else:
                    first = last.fetchone() if plan.returns and not many else None
                    result = first[0] if first is not None else None
        except conn.dialect.loaded_dbapi.Error as error:
            failed = items[-1]
            raise exc.DBAPIError.instance(
                failed[0].sql, failed[1], error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        for plan, parameters, many in items:
            for listener in conn.dispatch.after_cursor_execute:
                listener(conn, cursors[-1], plan.sql, parameters, None, many)
    finally:
        for cursor in cursors:
            cursor.close()
    return result
