"""An outage is not the mail's fault: while the database is away or locked the door keeps answering 250,
the worker holds the spool without charging any mail, /healthz and the metrics say so, and it all resumes
by itself. Only an error that belongs to one mail counts against that mail."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, PendingRollbackError

from mailgate.config import load_config
from mailgate.ops.health import is_outage
from mailgate.pipeline.worker import DatabaseUnavailable, describe_error
from mailgate.spool.disk import Spool, SpoolMeta
from tests.helpers import make_mail, stored_message_ids, wait_for, write_config
from tests.ops.test_metrics import get, metrics_port, sample

# -- which errors are outages ------------------------------------------------------------------------------


def _error_of(engine, statement: str) -> BaseException:
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except Exception as exc:
        return exc
    raise AssertionError(f"{statement!r} did not fail")


def test_a_locked_sqlite_database_is_an_outage_and_a_bad_statement_is_not(tmp_path: Path):
    path = tmp_path / "db.sqlite3"
    from mailgate.storage.db import make_engine

    engine = make_engine(f"sqlite:///{path}", busy_timeout=0.05)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        locked = _error_of(engine, "INSERT INTO t VALUES (1)")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in str(locked)
    assert is_outage(locked)
    assert not is_outage(_error_of(engine, "SELECT * FROM no_such_table"))  # an OperationalError too: a bug
    assert not is_outage(_error_of(engine, "INSERT INTO t VALUES ('not a number', 2)"))
    assert not is_outage(ValueError("a parser bug"))
    engine.dispose()


def test_an_unreachable_postgresql_is_an_outage():
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert is_outage(_error_of(engine, "SELECT 1"))
    finally:
        engine.dispose()


def test_an_outage_is_described_by_the_databases_error_not_by_the_rollback_over_it():
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        dead = _error_of(engine, "SELECT 1")
    finally:
        engine.dispose()
    try:
        try:
            raise dead
        except OperationalError:
            raise PendingRollbackError("Can't reconnect until invalid savepoint transaction is rolled back") from None
    except PendingRollbackError as exc:
        after = exc

    assert is_outage(after)
    assert describe_error(after).startswith("OperationalError: ")
    assert describe_error(ValueError("a parser bug")) == "ValueError: a parser bug"


# -- the worker, in process ---------------------------------------------------------------------------------


def _arrive(spool: Spool, subject: str, msgid: str) -> None:
    spool.put(
        make_mail(subject=subject, msgid=msgid),
        SpoolMeta(id="", mail_from="alice@customer.example", rcpt_tos=["support@example.com"]),
    )


def test_a_locked_database_puts_the_batch_back_uncharged_and_says_so(tmp_path: Path, harness_factory):
    db_path = tmp_path / "data" / "mailgate.sqlite3"
    harness = harness_factory(write_config(tmp_path, f"sqlite:///{db_path}", database={"busy_timeout": "100ms"}))
    spool = harness.runtime.spool
    for n in range(3):
        _arrive(spool, f"mail {n}", f"<w{n}@customer.example>")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            harness.worker.process_available()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert spool.depth() == {"incoming": 3, "work": 0, "quarantine": 0}
    assert [e.read_meta().attempts for e in spool.entries("incoming")] == [0, 0, 0]
    assert harness.worker.drain() == 3


def test_an_outage_error_the_database_does_not_confirm_is_charged_to_the_one_mail_that_raises_it(harness):
    def fake_outage(ctx):
        if "[statement timeout]" in (ctx.mail.subject or ""):
            raise OperationalError("SELECT pathological()", {}, sqlite3.OperationalError("database is locked"))

    harness.runtime.services.thread_finders.insert(0, ("fake", fake_outage))
    spool = harness.runtime.spool
    _arrive(spool, "first", "<u1@customer.example>")
    _arrive(spool, "[statement timeout] second", "<u2@customer.example>")
    _arrive(spool, "third", "<u3@customer.example>")

    assert harness.worker.process_available() == 0  # the batch back, nobody charged yet
    assert [e.read_meta().attempts for e in spool.entries("incoming")] == [0, 0, 0]
    assert [harness.worker.process_available() for _ in range(3)] == [1, 1, 1]  # one at a time
    assert sorted(stored_message_ids(harness.runtime.config.path)) == ["<u1@customer.example>", "<u3@customer.example>"]
    [left] = spool.entries("incoming")
    meta = left.read_meta()
    assert meta.attempts == 1 and "database is locked" in meta.last_error
    assert harness.worker.status.up


def test_a_lone_mail_is_charged_for_an_unconfirmed_outage_only_when_it_raises_it_twice_in_a_row(harness):
    def fake_outage(ctx):
        raise OperationalError("SELECT pathological()", {}, sqlite3.OperationalError("database is locked"))

    harness.runtime.services.thread_finders.insert(0, ("fake", fake_outage))
    spool = harness.runtime.spool
    _arrive(spool, "alone", "<alone@customer.example>")
    assert harness.worker.process_available() == 0
    assert spool.entries("incoming")[0].read_meta().attempts == 0
    assert harness.worker.process_available() == 1
    assert spool.entries("incoming")[0].read_meta().attempts == 1


# -- SQLite locked by another writer past the busy timeout -------------------------------------------------


def _log_count(daemon, message: str) -> int:
    return daemon.log().count(f'msg="{message}')


def test_sqlite_locked_past_its_busy_timeout_holds_the_mail_and_charges_none(tmp_path: Path, daemon_factory):
    db_path = tmp_path / "data" / "mailgate.sqlite3"
    config = write_config(
        tmp_path,
        f"sqlite:///{db_path}",
        database={"busy_timeout": "200ms"},
        metrics={"listen": "127.0.0.1:0"},
        spool={"max_attempts": 2},
    )
    daemon = daemon_factory(config)
    port = metrics_port(daemon)
    daemon.send(make_mail(subject="before the lock", msgid="<lock-0@customer.example>"))
    wait_for(lambda: "<lock-0@customer.example>" in stored_message_ids(config), message="the first mail stored")

    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the file: root ignores chmod, not this
    try:
        sent = [f"<lock-{n}@customer.example>" for n in range(1, 21)]
        for msgid in sent:
            assert daemon.send(make_mail(subject=f"during the lock {msgid}", msgid=msgid)) == {}  # 250
        _status, body = wait_for(
            lambda: (r := get(port, "/healthz"))[0] == 503 and "database: down" in r[1] and r,
            timeout=60,
            message="/healthz says the worker holds the spool",
        )
        assert "database is locked" in body
        _, metrics = get(port, "/metrics")
        assert sample(metrics, "mailgate_database_up") == 0
        assert sample(metrics, "mailgate_database_outages_total") == 1
        spool = Spool(load_config(config).spool_dir)
        assert spool.depth()["quarantine"] == 0
        assert all(entry.read_meta().attempts == 0 for entry in spool.entries("incoming"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    wait_for(
        lambda: set(sent) <= set(stored_message_ids(config)),
        timeout=90,
        interval=0.25,
        message="every mail stored after the lock is released",
    )
    settled = {"incoming": 0, "work": 0, "quarantine": 0}
    spool = Spool(load_config(config).spool_dir)
    wait_for(lambda: spool.depth() == settled, message="the spool emptied after the commit")
    assert get(port, "/healthz")[0] == 200
    _, metrics = get(port, "/metrics")
    assert sample(metrics, "mailgate_database_up") == 1
    assert _log_count(daemon, "database unavailable") == 1
    assert _log_count(daemon, "database back") == 1
    assert "message failed" not in daemon.log() and "message quarantined" not in daemon.log()
    assert daemon.alive


# -- PostgreSQL stopped and started under load -------------------------------------------------------------

PG_BIN = (
    next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
    if Path("/usr/lib/postgresql").is_dir()
    else None
)


class Cluster:
    """A PostgreSQL cluster of the test's own on a free loopback port, run by its own pg_ctl."""

    def __init__(self, bin_dir: Path, directory: Path, port: int) -> None:
        self.bin_dir, self.dir, self.port = bin_dir, directory, port
        self.data = directory / "data"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._as_postgres(str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.dir / "server.log"),
            "start",
        )

    def stop(self) -> None:
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pg_cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0 or PG_BIN is None or shutil.which("runuser") is None:
        pytest.skip("needs root, runuser and PostgreSQL's server binaries to run a cluster of its own")
    directory = Path(tempfile.mkdtemp(prefix="mailgate-pg-"))
    shutil.chown(directory, "postgres", "postgres")
    cluster = Cluster(PG_BIN, directory, _free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_stopped_and_started_during_a_load_loses_and_quarantines_nothing(
    tmp_path: Path, daemon_factory, pg_cluster: Cluster
):
    config = write_config(tmp_path, pg_cluster.url, metrics={"listen": "127.0.0.1:0"}, spool={"max_attempts": 2})
    daemon = daemon_factory(config)
    port = metrics_port(daemon)
    pid = daemon.proc.pid
    sent = [f"<pg-{n}@customer.example>" for n in range(100)]
    for msgid in sent[:40]:
        assert daemon.send(make_mail(subject=f"load {msgid}", msgid=msgid)) == {}

    pg_cluster.stop()
    for msgid in sent[40:]:
        assert daemon.send(make_mail(subject=f"load {msgid}", msgid=msgid)) == {}  # the door answers 250
    _status, body = wait_for(
        lambda: (r := get(port, "/healthz"))[0] == 503 and "database: down" in r[1] and r,
        timeout=60,
        message="/healthz says the worker holds the spool",
    )
    assert "OperationalError" in body
    wait_for(lambda: _log_count(daemon, "database unavailable") == 1, timeout=60, message="the outage logged")
    _, metrics = get(port, "/metrics")
    assert sample(metrics, "mailgate_database_up") == 0
    spool = Spool(load_config(config).spool_dir)
    assert spool.depth()["quarantine"] == 0

    pg_cluster.start()
    try:
        wait_for(
            lambda: set(sent) <= set(stored_message_ids(config)),
            timeout=120,
            interval=0.5,
            message="all 100 mails stored after PostgreSQL is back",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; spool {spool.depth()}; log:\n{daemon.log()[-6000:]}") from None
    ids = stored_message_ids(config)
    assert len(ids) == len(set(ids)) == 100
    # the spool entries are deleted right after the commit that stored them
    wait_for(lambda: spool.depth() == {"incoming": 0, "work": 0, "quarantine": 0}, message="the spool emptied")
    assert daemon.alive and daemon.proc.pid == pid  # resumed by itself, no restart
    assert _log_count(daemon, "database unavailable") == 1
    assert _log_count(daemon, "database back") == 1
    assert "message quarantined" not in daemon.log()
    assert wait_for(lambda: get(port, "/healthz")[0] == 200, message="/healthz healthy again")
    _, metrics = get(port, "/metrics")
    assert sample(metrics, "mailgate_database_up") == 1
    assert sample(metrics, "mailgate_database_outages_total") == 1
