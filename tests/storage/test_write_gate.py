"""SQLite's writers queue at a gate, an flock beside the database, held from BEGIN IMMEDIATE to the end.

SQLite's busy handler polls with sleeps that grow to 100 ms, so a worker process waiting for another's
batch slept on past its commit; a process waiting for an flock wakes when it is released.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import exc, text

from mailgate.storage import db


@pytest.fixture
def database(tmp_path: Path):
    path = tmp_path / "mailgate.sqlite3"
    engine = db.make_engine(f"sqlite:///{path}", busy_timeout=0.2)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine, Path(f"{path}-writers")
    engine.dispose()


def gate_is_free(gate: Path) -> bool:
    fd = os.open(gate, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing lets go of a lock taken here
    return True


@contextlib.contextmanager
def process_inside(code: str):
    """Another process that runs ``code`` (which takes the gate), says so, and waits to be killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", code + "print('inside', flush=True); time.sleep(600)\n"], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"inside\n"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


@pytest.mark.parametrize("end", ["commit", "rollback"])
def test_a_write_transaction_holds_the_gate_until_it_ends(database, end):
    engine, gate = database
    conn = engine.connect()
    transaction = conn.begin()
    conn.execute(text("INSERT INTO t VALUES (1)"))
    assert not gate_is_free(gate)
    getattr(transaction, end)()
    assert gate_is_free(gate)
    conn.close()


def test_a_reading_connection_takes_no_gate(database):
    engine, gate = database
    with db.reading(engine) as conn, conn.begin():
        conn.execute(text("SELECT count(*) FROM t")).scalar()
        assert gate_is_free(gate)


def test_a_writer_waits_at_the_gate_and_goes_on_when_it_is_free(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'mailgate.sqlite3'}", busy_timeout=60)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    first = engine.connect()
    transaction = first.begin()
    first.execute(text("INSERT INTO t VALUES (1)"))
    began = threading.Event()
    done: list[int] = []

    def second_writer() -> None:
        began.set()
        with engine.begin() as conn:  # waits at the gate
            conn.execute(text("INSERT INTO t VALUES (2)"))
            done.append(conn.execute(text("SELECT count(*) FROM t")).scalar_one())

    thread = threading.Thread(target=second_writer)
    thread.start()
    began.wait()
    thread.join(timeout=0.3)
    assert thread.is_alive() and not done, "the second writer waits as long as the first holds the gate"
    transaction.commit()
    thread.join(timeout=60)
    assert done == [2]
    first.close()
    engine.dispose()


def test_a_writer_that_waited_its_busy_timeout_at_the_gate_meets_sqlites_lock_and_its_outage(database):
    """A writer that holds on for too long is an outage (/healthz), as without a gate, not a hang."""
    engine, _gate = database  # busy_timeout 0.2 s
    first = engine.connect()
    transaction = first.begin()
    first.execute(text("INSERT INTO t VALUES (1)"))
    with pytest.raises(exc.OperationalError, match="locked"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    transaction.rollback()
    first.close()


def test_the_gate_gives_up_at_its_deadline_by_its_clock(tmp_path):
    path = tmp_path / "gate"
    holder = db.WriteGate(path, timeout=5.0)
    readings = iter([0.0, 2.0, 9.0, 20.0])
    waiter = db.WriteGate(path, timeout=5.0, clock=lambda: next(readings))
    holder.enter()

    def wait_in_another_thread() -> None:  # a thread of its own: one already inside does not queue
        waiter.enter()  # busy at 2.0, gives up at 9.0 (its deadline is 5.0)

    thread = threading.Thread(target=wait_in_another_thread)
    thread.start()
    thread.join(timeout=60)
    assert holder.inside and not waiter.inside
    assert next(readings) == 20.0, "it read the clock three times: no more looks after its deadline"
    holder.close()
    waiter.close()


def test_a_thread_holding_the_gate_does_not_wait_for_itself(database):
    """A second write connection in the same thread meets SQLite's busy timeout, as it did without a gate."""
    engine, _gate = database
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        with pytest.raises(exc.OperationalError, match="locked"), engine.begin() as other:
            other.execute(text("INSERT INTO t VALUES (2)"))


def test_a_process_killed_inside_its_transaction_leaves_the_gate_free(database, tmp_path):
    engine, gate = database
    code = (
        "import sys, time\n"
        "from sqlalchemy import text\n"
        "from mailgate.storage import db\n"
        f"engine = db.make_engine({str(engine.url)!r})\n"
        "conn = engine.connect(); conn.begin(); conn.execute(text('INSERT INTO t VALUES (9)'))\n"
    )
    with process_inside(code) as holder:
        assert not gate_is_free(gate)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        assert gate_is_free(gate)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 0, "its write was never committed"


def test_writers_of_one_process_wait_at_its_lock_without_looking_at_the_flock(tmp_path, monkeypatch):
    """Two threads polling the flock each cost a wake-up and a turn at the GIL every half millisecond."""
    path = tmp_path / "gate"
    looks: list[int] = []
    flock = db.fcntl.flock

    def counted(fd: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX:
            looks.append(fd)
        flock(fd, operation)

    monkeypatch.setattr(db.fcntl, "flock", counted)
    holder, waiter = db.WriteGate(path, timeout=60), db.WriteGate(path, timeout=60)
    holder.enter()
    thread = threading.Thread(target=waiter.enter)
    thread.start()
    thread.join(timeout=0.3)
    assert thread.is_alive() and looks == [holder.fd], "the waiter sleeps on the process's lock"
    holder.leave()
    thread.join(timeout=60)
    assert waiter.inside and looks == [holder.fd, waiter.fd], "it takes the flock once, when the holder left"
    waiter.close()
    holder.close()


def test_a_writer_waiting_for_another_process_gives_up_at_its_deadline(tmp_path):
    path = tmp_path / "gate"
    code = (
        f"import fcntl, os, time\nfd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
    )
    with process_inside(code):
        readings = iter([0.0, 2.0, 9.0, 20.0])
        waiter = db.WriteGate(path, timeout=5.0, clock=lambda: next(readings))
        waiter.enter()  # busy at 2.0, gives up at 9.0
        assert not waiter.inside and next(readings) == 20.0
        assert not db._process_lock(path).locked(), "it let go of its process's lock when it gave up"
        waiter.close()
