"""Build the long-lived parts of a process from a Config: database, spool, blobs, services."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailgate.clock import Clock, SystemClock
from mailgate.config import Config
from mailgate.context import Services
from mailgate.plugins import PLUGINS
from mailgate.spool.disk import Spool
from mailgate.storage import db
from mailgate.storage.blobs import open_blobs


@dataclass
class Runtime:
    config: Config
    engine: Engine
    sessions: sessionmaker[Session]
    spool: Spool
    services: Services
    plugins: list[ModuleType] = field(default_factory=list)
    check_templates: bool = True  # compile and test-render every template at start (serve, reload)

    def close(self) -> None:
        self.engine.dispose()


def build(
    config: Config, clock: Clock | None = None, *, create_schema: bool = True, check_templates: bool = True
) -> Runtime:
    """``check_templates``: serve checks every template when it starts and at each reload; a command
    that only reads, a worker process (its daemon checked them) and a mailbox import need not (~1-3 s)."""
    engine = db.make_engine(config.db_url, busy_timeout=config.database.busy_timeout)
    if create_schema:
        db.ensure_schema(engine)
    spool = Spool(config.spool_dir)
    spool.ensure()
    services = Services(config=config, clock=clock or SystemClock(), blobs=open_blobs(config, engine))
    runtime = Runtime(
        config=config,
        engine=engine,
        sessions=db.make_sessionmaker(engine),
        spool=spool,
        services=services,
        check_templates=check_templates,
    )
    import importlib

    for name in PLUGINS:
        module = importlib.import_module(name)
        module.install(runtime)
        runtime.plugins.append(module)
    return runtime


def install_plugins(runtime: Runtime, names: tuple[str, ...] | list[str]) -> None:
    """``[daemon] plugins``: in the daemon, and in each worker process, where the pipeline they extend runs."""
    for name in names:
        module = importlib.import_module(name)
        module.install(runtime)
        runtime.plugins.append(module)
