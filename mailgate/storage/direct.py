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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Update, exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

Statement = Insert | Update


@dataclass(frozen=True)
class _Compiled:
    statement: Statement  # kept, so a cache hit is this very statement (not one that reused its id)
    sql: str
    names: tuple[str, ...]  # the parameters in the order the SQL takes them
    fixed: tuple[Any, ...]  # for each, the value bound in the statement itself (when not given)
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool
    usable: bool = True  # False: the statement runs through SQLAlchemy's execution (see the module's doc)


_CACHE: dict[tuple[int, str, tuple[str, ...]], _Compiled] = {}


def _compile(statement: Statement, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
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
    )


def _plan(statement: Statement, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled | None:
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


def write(session: Session | Connection, statement: Statement, values: Mapping[str, Any]) -> Any:
    """Execute one INSERT or UPDATE; the first column of its first row (an id from RETURNING), else None.

    Only for values the returned column needs no result processing for (integer ids).
    """
    conn = session.connection() if isinstance(session, Session) else session
    plan = _plan(statement, conn.dialect, tuple(sorted(values)))
    if plan is None:
        row = conn.execute(statement, dict(values)).first()
        return row[0] if row is not None else None
    return _run(conn, plan, _bound(plan, values), many=False)


def write_many(session: Session | Connection, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
    """Execute one INSERT for each of ``rows`` (all with the same keys), as the driver's executemany."""
    if not rows:
        return
    conn = session.connection() if isinstance(session, Session) else session
    plan = _plan(statement, conn.dialect, tuple(sorted(rows[0])))
    if plan is None:
        conn.execute(statement, [dict(row) for row in rows])
        return
    _run(conn, plan, [_bound(plan, row) for row in rows], many=True)


def _run(conn: Connection, plan: _Compiled, parameters: Any, *, many: bool) -> Any:
    dbapi_connection: Any = conn.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        for listener in conn.dispatch.before_cursor_execute:
            listener(conn, cursor, plan.sql, parameters, None, many)
        try:
            if many:
                cursor.executemany(plan.sql, parameters)
                first = None
            else:
                cursor.execute(plan.sql, parameters)
                first = cursor.fetchone() if cursor.description is not None else None
        except conn.dialect.loaded_dbapi.Error as error:
            raise exc.DBAPIError.instance(
                plan.sql, parameters, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        for listener in conn.dispatch.after_cursor_execute:
            listener(conn, cursor, plan.sql, parameters, None, many)
    finally:
        cursor.close()
    return first[0] if first is not None else None
