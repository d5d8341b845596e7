"""Configuration: one TOML file, parsed once into frozen dataclasses.

Every value is checked and converted at load (sizes, durations, addresses,
paths relative to the file), so a typo stops the daemon at start with one
line naming the file, the key and what was expected, instead of failing on
the first mail. Nothing here is global: callers pass the ``Config`` along.

Sections read here: ``[mailgate]``, ``[smtp]``, ``[support]``, ``[spool]``,
``[database]``, ``[outbound]``, ``[[agents]]``, ``[[queues]]``. A module that owns another
section parses it from ``Config.raw`` with :class:`Table`, the same checked
reader, and reports errors the same way.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.config.table import Table
from mailgate.errors import ConfigError

DEFAULT_CONFIG = "config.toml"
EXAMPLE_CONFIG = "config.example.toml"


@dataclass(frozen=True)
class SmtpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2525
    max_message_size: int = 25_000_000
    line_length_limit: int = 100_000
    timeout: float = 300.0


@dataclass(frozen=True)
class SupportConfig:
    name: str = "Support"
    address: str = "support@example.com"
    accept: tuple[str, ...] = ("support@example.com",)
    token_prefix: str = ""
    default_queue: str = "support"
    locale: str = "en"
    max_new_watchers: int = 10  # Cc addresses one mail may add as watchers (the rest stay in the mail's Cc)
    max_watchers: int = 50  # watchers one ticket may have: each answer shows them all in Cc

    def accepts(self, recipient: str) -> bool:
        """True when ``recipient`` is one of our addresses (plus-extensions included)."""
        address = recipient.strip().strip("<>").lower()
        local, _, domain = address.rpartition("@")
        if not local:
            return False
        base_local = local.split("+", 1)[0]
        for entry in self.accept:
            if entry.startswith("@"):
                if domain == entry[1:]:
                    return True
            elif address == entry or f"{base_local}@{domain}" == entry:
                return True
        return False


@dataclass(frozen=True)
class SpoolConfig:
    max_attempts: int = 5
    batch_size: int = 50
    max_claims: int = 3  # claimed this often without a verdict (it kills or wedges the worker): quarantined
    mail_budget: float = 60.0  # seconds of pipeline work one mail may take; 0: no budget
    workers: int = field(default_factory=lambda: auto_workers())  # worker processes beside the door; 0: in its process
    workers_auto: bool = True  # workers = "auto" (or unset): an import, with no door, takes every core


def auto_workers(cores: int | None = None) -> int:
    """``[spool] workers = "auto"`` (the default): one worker process per core but the door's, at least one.

    The door needs a core of its own under load (in one interpreter the door and the pipeline share one
    core's worth of it): on two cores one worker beside the door stored 20 % more small mails on SQLite
    than the pipeline in the door's process, with a p99 a third lower, and a second worker little more
    for another ~140 MB (bench/README.md, 2026-12-08).
    """
    return max(1, (cores if cores is not None else usable_cores()) - 1)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class DatabaseConfig:
    busy_timeout: float = 30.0  # seconds SQLite waits for a lock before the worker treats it as an outage


@dataclass(frozen=True)
class OutboundConfig:
    smarthost: str = ""
    starttls: bool = True  # safe by default: a loopback smarthost turns it off explicitly
    username: str = ""
    password: str = ""
    timeout: float = 60.0


@dataclass(frozen=True)
class AgentConfig:
    address: str
    name: str
    queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueConfig:
    name: str
    agents: tuple[str, ...] = ()
    locale: str = "en"
    escalation_address: str = ""


@dataclass(frozen=True)
class ReadingConfig:
    """``[reading]``: what mailgate does with the mail it reads (see mailgate.pipeline.steps.held)."""

    unthreaded_automatic: str = "hold"  # hold: an auto-reply/report that threads to no ticket opens none


@dataclass(frozen=True)
class Config:
    path: Path
    hostname: str
    data_dir: Path
    database_url: str
    log_level: str
    log_format: str
    smtp: SmtpConfig
    support: SupportConfig
    spool: SpoolConfig
    outbound: OutboundConfig
    agents: tuple[AgentConfig, ...] = ()
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    queues: tuple[QueueConfig, ...] = ()
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    cache_dir: Path | None = None  # None: <data_dir>/cache

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def cache_path(self) -> Path:
        """Where derived files that can always be rebuilt live (the language model, unpacked)."""
        return self.cache_dir or self.data_dir / "cache"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def sent_dir(self) -> Path:
        return self.data_dir / "sent"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'mailgate.sqlite3'}"

    def agent(self, address: str) -> AgentConfig | None:
        address = address.strip().lower()
        return next((a for a in self.agents if a.address == address), None)

    def queue(self, name: str) -> QueueConfig | None:
        return next((q for q in self.queues if q.name == name), None)

    def queue_agents(self, name: str) -> list[str]:
        """The agents of a queue, the one definition: its ``agents`` list, then every agent that lists it."""
        configured = self.queue(name)
        listed = list(configured.agents) if configured else []
        listed += [a.address for a in self.agents if name in a.queues]
        return list(dict.fromkeys(listed))


# Sections owned by other modules; they parse them from Config.raw themselves.
_FOREIGN_SECTIONS = {
    "imap",
    "rules",
    "spam",
    "metrics",
    "sla",
    "loop",
    "templates",
    "agent_auth",
    "lifecycle",
    "bounces",
    "logging",
    "scheduler",
    "daemon",
    "notify",
    "relay",  # notify, relay: mailgate.outbound.attachments
    "blobs",
}  # blobs: mailgate.storage.blobstore


def load_config(path: Path | str) -> Config:
    """Read and check the config file; raise ConfigError with file and key."""
    path = Path(path).resolve()
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `mailgate init` to create one)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    base = path.parent
    root = Table(data, path, "")
    main = root.table("mailgate")
    hostname = main.str("hostname", "localhost")
    data_dir = main.path("data_dir", "storage", base)
    cache_dir = main.path("cache_dir", str(data_dir / "cache"), base)
    database_url = main.str("database_url", "")
    log_level = main.str("log_level", "info", choices=("debug", "info", "warning", "error"))
    log_format = main.str("log_format", "logfmt", choices=("logfmt", "json"))
    main.str("secret_file", "")  # read by mailgate.mail.signing
    main.str("node", "")  # read by mailgate.ops.node
    main.finish()

    s = root.table("smtp")
    host, port = s.listen("listen", "127.0.0.1:2525")
    smtp = SmtpConfig(
        enabled=s.bool("enabled", True),
        host=host,
        port=port,
        max_message_size=s.size("max_message_size", "25MB"),
        line_length_limit=s.int("line_length_limit", 100_000, minimum=1001),
        timeout=s.duration("timeout", "5m"),
    )
    s.finish()

    sup = root.table("support")
    address = sup.address("address", "support@example.com")
    accept = tuple(a.strip().lower() for a in sup.str_list("accept", [address]))
    for entry in accept:
        if "@" not in entry:
            raise sup.error("accept", f"expected addresses or @domain entries, got {entry!r}")
    support = SupportConfig(
        name=sup.str("name", "Support"),
        address=address,
        accept=accept,
        token_prefix=sup.str("token_prefix", ""),
        default_queue=sup.str("default_queue", "support"),
        locale=sup.str("locale", "en"),
        max_new_watchers=sup.int("max_new_watchers", SupportConfig.max_new_watchers, minimum=0),
        max_watchers=sup.int("max_watchers", SupportConfig.max_watchers, minimum=0),
    )
    sup.finish()

    sp = root.table("spool")
    workers = sp.int_or("workers", "auto", minimum=0)
    spool = SpoolConfig(
        max_attempts=sp.int("max_attempts", 5, minimum=1),
        batch_size=sp.int("batch_size", 50, minimum=1),
        max_claims=sp.int("max_claims", 3, minimum=1),
        mail_budget=sp.duration("mail_budget", "60s"),
        workers=auto_workers() if workers is None else workers,
        workers_auto=workers is None,
    )
    sp.finish()

    dbt = root.table("database")
    database = DatabaseConfig(busy_timeout=dbt.duration("busy_timeout", "30s"))
    dbt.finish()

    out = root.table("outbound")
    smarthost = out.str("smarthost", "")
    if smarthost and not smarthost.rpartition(":")[2].isdigit():
        raise out.error("smarthost", f"expected host:port or empty, got {smarthost!r}")
    password = out.str("password", "")
    if out.has("password_file"):
        password_path = out.path("password_file", "", base)
        try:
            password = password_path.read_text().strip()
        except OSError as exc:
            raise out.error("password_file", f"cannot read {password_path}: {exc.strerror}") from None
    outbound = OutboundConfig(
        smarthost=smarthost,
        starttls=out.bool("starttls", OutboundConfig.starttls),
        username=out.str("username", ""),
        password=password,
        timeout=out.duration("timeout", "60s"),
    )
    _ignore_foreign(out, _OUTBOUND_FOREIGN_KEYS)
    out.finish()

    agents = []
    for t in root.tables("agents"):
        agents.append(
            AgentConfig(address=t.address("address"), name=t.str("name", ""), queues=t.str_list("queues", []))
        )
        _ignore_foreign(t, _AGENT_FOREIGN_KEYS)
        t.finish()
    queues = []
    for t in root.tables("queues"):
        queues.append(
            QueueConfig(
                name=t.str("name"),
                agents=tuple(a.lower() for a in t.str_list("agents", [])),
                locale=t.str("locale", support.locale),
                escalation_address=t.str("escalation_address", ""),
            )
        )
        _ignore_foreign(t, _QUEUE_FOREIGN_KEYS)
        t.finish()
    names = [q.name for q in queues]
    if len(set(names)) != len(names):
        raise root.error("queues", "two queues share a name")
    rd = root.table("reading")
    reading = ReadingConfig(unthreaded_automatic=rd.str("unthreaded_automatic", "hold", choices=("hold", "ticket")))
    rd.finish()

    for name in _FOREIGN_SECTIONS:
        root._seen.add(name)
    root.finish()
    return Config(
        path=path,
        hostname=hostname,
        data_dir=data_dir,
        cache_dir=cache_dir,
        database_url=database_url,
        log_level=log_level,
        log_format=log_format,
        smtp=smtp,
        support=support,
        spool=spool,
        outbound=outbound,
        agents=tuple(agents),
        queues=tuple(queues),
        database=database,
        reading=reading,
        raw=data,
    )


# Keys inside core tables that other modules read from Config.raw.
_OUTBOUND_FOREIGN_KEYS: frozenset[str] = frozenset(
    {"admin_address", "max_age", "retry_base", "retry_max", "sweep_interval", "batch_size"}
)  # mailgate.outbound.settings
_AGENT_FOREIGN_KEYS: frozenset[str] = frozenset()
_QUEUE_FOREIGN_KEYS: frozenset[str] = frozenset()


def _ignore_foreign(table: Table, keys: frozenset[str]) -> None:
    for key in keys:
        table._seen.add(key)


def find_config(explicit: str | None) -> Path:
    """The config file to use: --config, else ./config.toml."""
    return Path(explicit) if explicit else Path(DEFAULT_CONFIG)
