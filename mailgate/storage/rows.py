"""Rows written with one Core INSERT each instead of waiting for the unit of work.

The ORM's flush costs far more than the INSERT it emits (it sorts, diffs and
cascades every object in the session), and every mail adds a handful of rows.
:func:`insert_now` writes a new object at once and keeps it a loaded object of
the session; :func:`flushed_id` and :func:`nothing_pending` tell when a row that
names others (an event, a Message-ID index entry) can be written at once too;
:func:`write_changes` writes the changed columns of loaded objects (a ticket's
status and times, at the end of each mail) with one UPDATE each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Insert, Integer, Select, Table, Update, bindparam, func, insert, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, make_transient_to_detached

from mailgate.storage import direct
from mailgate.storage.models import Base

B = TypeVar("B", bound=Base)


def flushed_id(obj: Base | None) -> int | Literal[False] | None:
    """The primary key of a row already written, None for no object, False for one not flushed yet.

    Read from the identity key, so an expired object is not loaded again.
    """
    if obj is None:
        return None
    identity = inspect(obj).identity
    return False if identity is None else int(identity[0])


def nothing_pending(session: Session) -> bool:
    """No new object waits for a flush: a row written now cannot come before one recorded earlier."""
    return not session.new


def table(model: type[Base]) -> Table:
    """The model's table, typed as a Table for Core statements."""
    return cast(Table, model.__table__)


@dataclass(frozen=True)
class _Plan:
    """How one class's rows are inserted: its statement, and each column's attribute and default."""

    statement: Insert
    columns: tuple[tuple[str, str, Any], ...]  # (column key, attribute key, default: value or callable)
    primary_key: str  # the attribute that receives the new id
    rowid: bool  # SQLite: the id is the new rowid, not RETURNING's (see mailgate.storage.direct.write)
    id_column: str  # the primary key's column, for a row whose id was taken before (``insert_now(new_id=)``)
    with_id: Insert  # that row's statement: it returns nothing, so it may wait in the queue of writes


_PLANS: dict[tuple[type[Base], str, str], _Plan] = {}


def _plan(model: type[Base], unique: str = "", dialect: str = "") -> _Plan:
    """``unique``: a column whose conflict makes the INSERT do nothing (the statement is then the dialect's)."""
    plan = _PLANS.get((model, unique, dialect))
    if plan is None:
        mapper, target = inspect(model), table(model)
        [primary_key] = target.primary_key.columns
        columns = tuple(
            (column.key, mapper.get_property_by_column(column).key, getattr(column.default, "arg", None))
            for column in target.columns
            if column is not primary_key
        )
        key = mapper.get_property_by_column(primary_key).key
        statement: Insert = insert(target)
        if unique:
            dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = dialect_insert(target).on_conflict_do_nothing(index_elements=[unique])
        # SQLite: an INTEGER primary key is the rowid, read from the cursor (RETURNING would flush FTS5)
        rowid = dialect == "sqlite" and type(primary_key.type) is Integer
        if not rowid:
            statement = statement.returning(primary_key)
        plan = _PLANS[(model, unique, dialect)] = _Plan(statement, columns, key, rowid, primary_key.key, insert(target))
    return plan


def new(model: type[B], **values: Any) -> B:
    """A new object of ``model`` with these column values, made without its instrumented constructor.

    The constructor sets each value through the attribute's instrumentation (history, events), some
    20 µs for a mail's row; an object that :func:`insert_now` writes, or :func:`loaded` makes of a row
    read, drops that history at once. Only columns: a relationship is linked after, with
    ``set_committed_value``; another name is refused, as the constructor refuses it.
    """
    manager, columns = _shape(model)
    unknown = values.keys() - columns
    if unknown:
        raise TypeError(f"{sorted(unknown)!r}: not columns of {model.__name__}")
    obj = cast(B, manager.new_instance())
    obj.__dict__.update(values)
    return obj


_SHAPES: dict[type[Base], tuple[Any, frozenset[str]]] = {}


def _shape(model: type[Base]) -> tuple[Any, frozenset[str]]:
    shape = _SHAPES.get(model)
    if shape is None:
        mapper = inspect(model)
        shape = _SHAPES[model] = (mapper.class_manager, frozenset(p.key for p in mapper.column_attrs))
    return shape


def insert_now(session: Session, obj: Base, *, unique: str = "", new_id: int | None = None) -> bool:
    """Write a new object with one Core INSERT and make it a persistent object of the session.

    For the rows every mail adds (customer, ticket, message, attachments), whose ids the next rows need
    at once: the unit of work would sort, diff and cascade for each. Every column is written (a
    default taken from the column is set on the object too), so nothing is expired and read again.
    Relationships are not followed: give ids, and link loaded objects with ``set_committed_value``.
    A savepoint rolled back leaves the object expired; a later row given its id replaces it.

    ``unique``: a column another transaction may be adding the same value to at once (a customer's
    address, with two worker processes): on a conflict nothing is written and False returned, and the
    caller reads the other's row. PostgreSQL answers only once that transaction has ended.

    ``new_id``: the id taken from the table's sequence beforehand (:func:`next_ids`): the row needs no
    RETURNING, so on PostgreSQL it waits in the queue and goes out with the next statement, and an
    error of it comes out there (the pipeline sends the queue at the end of each mail). Not with
    ``unique``: a row that may conflict must say whether it was written, so it is sent at once.
    """
    state = inspect(obj)
    plan, loaded = _plan(type(obj), unique, session.connection().dialect.name), state.dict
    values = {}
    for column, key, default in plan.columns:
        if key not in loaded:
            setattr(obj, key, default(None) if callable(default) else default)
        values[column] = loaded[key]
    if new_id is not None and not unique:
        direct.write(session, plan.with_id, {**values, plan.id_column: new_id})
    else:
        new_id = direct.write(session, plan.statement, values, new_rowid=plan.rowid)
    if new_id is None:
        return False
    setattr(obj, plan.primary_key, new_id)
    state.mapper.dispatch.after_insert(state.mapper, session.connection(), state)  # as a flush would
    make_transient_to_detached(obj)
    stale = session.identity_map.get(state.key) if state.key is not None else None
    if stale is not None and stale is not obj:
        session.expunge(stale)  # left expired by a rolled-back savepoint; its row is gone
    session.add(obj)
    return True


def next_ids(*models: type[Base]) -> Select[Any]:
    """PostgreSQL: one SELECT taking the next id of each model's table from its sequence (SERIAL's own),
    to read in a round trip the mail makes anyway, so the rows can go without RETURNING (``new_id``)."""
    found = _NEXT_IDS.get(models)
    if found is None:
        found = _NEXT_IDS[models] = select(
            *(func.nextval(f"{table(model).name}_id_seq").label(table(model).name) for model in models)
        )
    return found


_NEXT_IDS: dict[tuple[type[Base], ...], Select[Any]] = {}
_KEYS: dict[type[Base], tuple[tuple[str, ...], int]] = {}


def loaded(session: Session, model: type[B], row: Sequence[Any]) -> B:
    """The object of a row of ``model``'s table (its columns in the table's order), as a query would give it.

    The one the session holds already, else a new persistent object of the session: the row read with
    :func:`mailgate.storage.direct.read`, which can share a round trip with other reads, where the ORM's
    own query would take one of its own (PostgreSQL). Relationships are not loaded.
    """
    keys_and_pk = _KEYS.get(model)
    if keys_and_pk is None:
        mapper, target = inspect(model), table(model)
        [primary_key] = target.primary_key.columns
        keys = tuple(mapper.get_property_by_column(column).key for column in target.columns)
        keys_and_pk = _KEYS[model] = (keys, list(target.columns).index(primary_key))
    keys, pk_index = keys_and_pk
    found = held(session, model, row[pk_index])
    if found is not None:
        return found
    obj = new(model, **dict(zip(keys, row, strict=True)))
    make_transient_to_detached(obj)  # every column loaded, no history: as if read by a query
    session.add(obj)
    return obj


def held(session: Session, model: type[B], primary_key: Any) -> B | None:
    """The object of this row the session holds already, if any (no statement, no refresh)."""
    return cast(B | None, session.identity_map.get(inspect(model).identity_key_from_primary_key((primary_key,))))


_UPDATES: dict[tuple[type[Base], tuple[str, ...]], Update] = {}


def write_changes(session: Session) -> int:
    """Write the changed columns of each modified loaded object with one Core UPDATE, as a flush would.

    A follow-up changes its ticket (status, times) and nothing else, and the unit of work spent more
    on that one UPDATE than on everything else the mail writes. An object with a change the unit of
    work must handle (a relationship, an attribute not a column of its one table) is left to the
    flush, and so is every new or deleted object. Returns how many objects were written.
    """
    written = 0
    for state in list(session.identity_map._modified):
        if state.key is None or state.deleted or state.was_deleted or state.obj() is None:
            continue
        mapper, loaded = state.mapper, state.dict
        target = cast(Table, mapper.local_table)
        if len(target.primary_key.columns) != 1 or mapper.local_table is not mapper.persist_selectable:
            continue
        [primary_key] = target.primary_key.columns
        identity = mapper.get_property_by_column(primary_key).key
        keys = tuple(sorted(state.committed_state))
        if not keys or any(key not in mapper.columns or key == identity or key not in loaded for key in keys):
            continue
        statement = _UPDATES.get((mapper.class_, keys))
        if statement is None:
            key_of = {mapper.get_property_by_column(c).key: c.key for c in target.columns}
            statement = _UPDATES[(mapper.class_, keys)] = (
                update(target)
                .where(primary_key == bindparam("_pk"))
                .values({key_of[key]: bindparam(key) for key in keys})
            )
        values = {key: loaded[key] for key in keys}
        values["_pk"] = state.key[1][0]
        direct.write(session, statement, values)
        # clean again, and known to the transaction as changed, as after a flush: a rollback (to a
        # savepoint too) expires it, so nobody reads back the values it took away
        session._register_persistent({state})
        written += 1
    return written
