"""Engine and sessions, SQLite tuning, and schema upgrades through Alembic.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed transaction is
on disk before the spool entry that fed it is deleted, so a power cut cannot
lose a mail that was answered 250. pysqlite's own transaction handling is
switched off so that SAVEPOINTs work (one savepoint per message inside a
batch transaction: the group commit).

Writers of one SQLite file queue at a gate (:class:`WriteGate`), an ``flock``
beside the database, before SQLite's own lock: SQLite's busy handler polls
with sleeps of up to 100 ms, so a worker process waiting for another's batch
would sleep on past its commit; a writer at the gate looks every half
millisecond.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

from mailgate.errors import DatabaseSchemaError
from mailgate.storage import direct

if TYPE_CHECKING:  # Alembic costs ~0.2 s to import: only where migrations run, or the schema is checked
    from alembic.config import Config as AlembicConfig

MIGRATIONS = str(Path(__file__).parent / "migrations")


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another engine, or an in-memory database)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def make_engine(url: str, busy_timeout: float = 30.0, **kwargs: Any) -> Engine:
    """``busy_timeout``: seconds SQLite waits for another writer's lock before it raises "database is locked"."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": busy_timeout, "check_same_thread": False}
        if path is not None:
            connect_args["factory"] = _gated(Path(f"{path}-writers"), busy_timeout)
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _tune_sqlite(engine, busy_timeout)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        direct.defer_on(engine)  # the writes that return nothing share a round trip with the next statement
    return engine


def _tune_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (savepoints work)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        gate = getattr(dbapi_connection, "gate", None)
        if gate is not None:
            gate.enter()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if gate is not None:
                gate.leave()
            raise


GATE_POLL = 0.0005  # seconds between two looks at a gate another process holds (SQLite's busy handler: up to 0.1 s)
GATE_SLICE = 0.05  # seconds a thread sleeps on its process's lock before it looks at its clock again


class WriteGate:
    """One connection's place in the queue of a SQLite file's writers: an ``flock`` on ``<database>-writers``.

    Entered before ``BEGIN IMMEDIATE``, left after the COMMIT or ROLLBACK. The writers of one process
    queue first at a lock of that process (:func:`_process_lock`): a thread waiting there sleeps until it
    is released, where two threads each looking at the ``flock`` every half millisecond (the daemon's
    sender behind its pipeline's batch) cost a wake-up and a turn at the GIL each time. The one writer
    of a process that waits for another process looks again every :data:`GATE_POLL` seconds, so it goes
    on within a millisecond of the one before it. Either wait lasts ``busy_timeout`` at most: then it
    goes on to SQLite's own lock, whose busy timeout makes a writer that holds on too long an outage
    (/healthz), as without a gate. A process killed while it holds the gate lets go of it with its
    files. A thread that already holds the gate through another connection does not queue again (it
    would wait for itself): it meets SQLite's busy timeout, as without a gate. A gate that cannot be
    opened (a read-only folder) is no gate: SQLite's own lock still holds.
    """

    _held = threading.local()  # the gates this thread is inside of, by path

    def __init__(self, path: Path, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.timeout, self.clock = path, timeout, clock
        self.fd: int | None = None
        self.inside = False

    def enter(self) -> None:
        held: set[Path] = self._held.__dict__.setdefault("paths", set())
        if self.inside or self.path in held:
            return
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return
        deadline = self.clock() + self.timeout
        local = _process_lock(self.path)
        while not local.acquire(timeout=min(GATE_SLICE, max(self.timeout, 0.0))):
            if self.clock() >= deadline:
                return  # on to SQLite's lock and its busy timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self.clock() >= deadline:
                    local.release()
                    return  # on to SQLite's lock and its busy timeout
                time.sleep(GATE_POLL)
        self.inside = True
        held.add(self.path)

    def leave(self) -> None:
        if not self.inside or self.fd is None:
            return
        self.inside = False
        self._held.__dict__.setdefault("paths", set()).discard(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            with contextlib.suppress(RuntimeError):  # in a forked child the lock is a new one, not held
                _process_lock(self.path).release()

    def close(self) -> None:
        self.leave()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_PROCESS_LOCKS: dict[Path, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: Path) -> threading.Lock:
    """The lock the writers of this process take before the gate of ``path``."""
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(path, threading.Lock())


def _forget_process_locks() -> None:  # a forked child starts with no writer inside: none of its parent's locks
    global _PROCESS_LOCKS_GUARD
    _PROCESS_LOCKS_GUARD = threading.Lock()
    _PROCESS_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_process_locks)


def _gated(gate_path: Path, timeout: float) -> type[sqlite3.Connection]:
    """A pysqlite connection class that leaves its :class:`WriteGate` when its transaction ends."""

    class GatedConnection(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.gate = WriteGate(gate_path, timeout)

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self.gate.leave()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self.gate.leave()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self.gate.close()

    return GatedConnection


READ_ONLY = "mailgate_read_only"


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection that only reads: on SQLite its transaction is deferred, so it never waits for a writer.

    Every other SQLite transaction begins IMMEDIATE (it takes the write lock at once, so two writers queue
    instead of failing at their first write). A read under that lock would wait for a batch transaction
    of the same process to end; in WAL mode a deferred reader sees the last commit and waits for nothing.
    """
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield conn


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", MIGRATIONS)
    cfg.attributes["engine"] = engine
    return cfg


def current_heads(engine: Engine) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def script_heads(engine: Engine) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_alembic_config(engine)).get_heads())


def is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()


def upgrade(engine: Engine, revision: str = "heads") -> None:
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def ensure_schema(engine: Engine) -> None:
    """Create an empty database; refuse to run on one at another schema version."""
    if is_empty(engine):
        upgrade(engine)
        return
    have, want = current_heads(engine), script_heads(engine)
    if have != want:
        raise DatabaseSchemaError(
            f"database schema is at {sorted(have) or 'nothing'}, this mailgate needs {sorted(want)}: "
            "run `mailgate db upgrade`"
        )
