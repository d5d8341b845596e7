"""Build the long-lived parts of a process from a Config: database, spool, blobs, services."""

from __future__ import annotations

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

    def close(self) -> None:
        self.engine.dispose()


def build(config: Config, clock: Clock | None = None, *, create_schema: bool = True) -> Runtime:
    engine = db.make_engine(config.db_url, busy_timeout=config.database.busy_timeout)
    if create_schema:
        db.ensure_schema(engine)
    spool = Spool(config.spool_dir)
    spool.ensure()
    services = Services(config=config, clock=clock or SystemClock(), blobs=open_blobs(config, engine))
    runtime = Runtime(
        config=config, engine=engine, sessions=db.make_sessionmaker(engine), spool=spool, services=services
    )
    import importlib

    for name in PLUGINS:
        module = importlib.import_module(name)
        module.install(runtime)
        runtime.plugins.append(module)
    return runtime
