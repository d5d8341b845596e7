"""Shared fixtures. The suite runs on SQLite, and on PostgreSQL when MAILGATE_TEST_DATABASE_URL is set
(each test then gets a schema of its own)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mailgate.app import Runtime, build
from mailgate.clock import FakeClock
from mailgate.config import load_config
from mailgate.context import Envelope
from mailgate.pipeline.worker import Worker
from mailgate.spool.disk import SpoolMeta
from tests.helpers import Daemon, address_of, drop_schema, write_config

PG_URL = os.environ.get("MAILGATE_TEST_DATABASE_URL", "")


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'data' / 'mailgate.sqlite3'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    drop_schema(admin, schema)
    admin.dispose()


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, db_url)


@pytest.fixture
def make_config(tmp_path: Path, db_url: str) -> Callable[..., Path]:
    """Write config.toml with extra sections: make_config(support={...}, agents=[...])."""

    def _make(**sections: Any) -> Path:
        return write_config(tmp_path, db_url, **sections)

    return _make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Harness:
    """An in-process mailgate: the real pipeline, spool and database, a fake clock, no sockets."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.worker = Worker(runtime.spool, runtime.sessions, runtime.services)

    def deliver(
        self,
        raw: bytes,
        mail_from: str = "alice@customer.example",
        rcpt_tos: tuple[str, ...] = ("support@example.com",),
        source: str = "smtp",
    ) -> None:
        """What the SMTP door does, then what the worker does."""
        rcpt = [address_of(r) for r in rcpt_tos]
        self.runtime.spool.put(raw, SpoolMeta(id="", source=source, mail_from=mail_from, rcpt_tos=rcpt))
        self.worker.drain()

    def session(self) -> Any:
        return self.runtime.sessions()

    def envelope(self, **kwargs: Any) -> Envelope:
        return Envelope(**kwargs)


@pytest.fixture
def harness_factory(clock: FakeClock) -> Iterator[Callable[[Path], Harness]]:
    made: list[Runtime] = []

    def _make(config_path: Path) -> Harness:
        runtime = build(load_config(config_path), clock=clock)
        made.append(runtime)
        return Harness(runtime)

    yield _make
    for runtime in made:
        runtime.close()


@pytest.fixture
def harness(harness_factory: Callable[[Path], Harness], config_file: Path) -> Harness:
    return harness_factory(config_file)


@pytest.fixture(autouse=True)
def sent_mail_is_well_formed(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test: each mail in its sent maildirs has the structure of tests/mail_structure.py."""
    root = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if root is None:
        return
    from tests import mail_structure

    for path in sorted(root.rglob("sent/*/*")):
        if path.parent.name in ("new", "cur") and path.is_file():
            found = mail_structure.problems(path.read_bytes())
            assert not found, f"{path.name}: {'; '.join(found)}"


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Daemon]]:
    """Start real `mailgate serve` processes; each is stopped (SIGTERM, then SIGKILL) after the test."""
    started: list[Daemon] = []

    def _start(config: Path, env: dict[str, str] | None = None) -> Daemon:
        daemon = Daemon(config, env=env).start()
        started.append(daemon)
        return daemon

    yield _start
    for daemon in started:
        if daemon.alive:
            daemon.stop()


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon], config_file: Path) -> Daemon:
    return daemon_factory(config_file)
