"""``/healthz``: can this daemon take mail right now?

Two checks, both real: a probe file is written, fsynced and removed in the
spool's ``tmp/`` (exactly what accepting a mail does first), and the
database answers ``SELECT 1``. Either failing makes the endpoint answer 503,
so a load balancer or monitor stops sending mail here before the SMTP door
starts answering 451. The database is also reported down while the worker
holds the spool because of an outage it saw (:class:`DatabaseStatus`): a
SQLite file locked by another writer still answers ``SELECT 1``.

An outage is not the mail's fault: :func:`is_outage` tells the errors that
mean "the database is away or locked" (the worker waits and retries without
charging any mail) from those that belong to one mail (counted against it).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from mailgate.fsutil import write_synced

if TYPE_CHECKING:
    from mailgate.app import Runtime
    from mailgate.context import Services

# sqlite3 raises OperationalError for bugs too ("no such column"): only these mean the file is away or locked
_SQLITE_OUTAGE = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "unable to open",
    "readonly database",
    "database or disk is full",
    "disk image is malformed",
)


def is_outage(error: BaseException | None) -> bool:
    """True when ``error`` (or what caused it) says the database cannot be reached or written right now."""
    return outage_cause(error) is not None


def outage_cause(error: BaseException | None) -> BaseException | None:
    """The error in ``error``'s chain that says the database is out, if any.

    A driver's error on a dead connection is often followed by another one from
    rolling back over it (SQLAlchemy's PendingRollbackError); operators need the first.
    """
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
            return error
        orig = getattr(error, "orig", None)
        module = type(orig).__module__ if orig is not None else ""
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError):
            if module.startswith("sqlite3"):
                return error if any(marker in str(orig).lower() for marker in _SQLITE_OUTAGE) else None
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


class DatabaseStatus:
    """What the worker last saw of the database: up, or down since when and why (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.up = True
        self.reason = ""
        self.since = 0.0
        self.outages = 0

    def down(self, reason: str) -> bool:
        """Record an outage; True when this is a change of state (log it once)."""
        with self._lock:
            if not self.up:
                self.reason = reason
                return False
            self.up, self.reason, self.since = False, reason, time.monotonic()
            self.outages += 1
            return True

    def back(self) -> float | None:
        """Record that the database answers again; the outage's length in seconds, or None if it was up."""
        with self._lock:
            if self.up:
                return None
            self.up, self.reason = True, ""
            return time.monotonic() - self.since


def database_status(services: Services) -> DatabaseStatus:
    """The one status of this process (the worker writes it, /healthz and the metrics read it)."""
    status = services.database_status
    if status is None:
        status = services.database_status = DatabaseStatus()
    return status


def check_spool(runtime: Runtime) -> str:
    """ "" when the spool takes a write; else why not."""
    probe = runtime.spool.tmp / f".healthz-{os.getpid()}"
    try:
        write_synced(probe, b"ok")
        probe.unlink()
    except OSError as exc:
        return f"cannot write {runtime.spool.tmp}: {exc.strerror or exc}"
    return ""


def check_database(runtime: Runtime) -> str:
    status = database_status(runtime.services)
    if not status.up:
        return f"down (the worker is holding the spool): {status.reason}"
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "unreachable" to a monitor
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return ""


def check(runtime: Runtime) -> tuple[bool, dict[str, str]]:
    """(healthy, {check: "ok" or the problem}); blocking, run it in a thread."""
    results = {"spool": check_spool(runtime), "database": check_database(runtime)}
    return not any(results.values()), {name: problem or "ok" for name, problem in results.items()}
