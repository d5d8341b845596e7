"""``/healthz``: can this daemon take mail right now?

Two checks, both real: a probe file is written, fsynced and removed in the
spool's ``tmp/`` (exactly what accepting a mail does first), and the
database answers ``SELECT 1``. Either failing makes the endpoint answer 503,
so a load balancer or monitor stops sending mail here before the SMTP door
starts answering 451.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import text


def check_spool(runtime: Any) -> str:
    """"" when the spool takes a write; else why not."""
    probe = runtime.spool.tmp / f".healthz-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"ok")
            handle.flush()
            os.fsync(handle.fileno())
        probe.unlink()
    except OSError as exc:
        return f"cannot write {runtime.spool.tmp}: {exc.strerror or exc}"
    return ""


def check_database(runtime: Any) -> str:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "unreachable" to a monitor
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return ""


def check(runtime: Any) -> tuple[bool, dict[str, str]]:
    """(healthy, {check: "ok" or the problem}); blocking, run it in a thread."""
    results = {"spool": check_spool(runtime), "database": check_database(runtime)}
    return not any(results.values()), {name: problem or "ok" for name, problem in results.items()}
