"""The outbound settings: extra ``[outbound]`` keys, ``[loop]``, ``[bounces]`` and ``[templates]``.

Parsed from ``Config.raw`` with the checked reader, so a typo names the file
and the key and stops ``serve`` at start. The core ``[outbound]`` keys
(smarthost, starttls, username, password, timeout) are parsed by
:mod:`mailgate.config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailgate.config import Config, Table
from mailgate.outbound.loopguard import Limits

OUTBOUND_KEYS = ("admin_address", "max_age", "retry_base", "retry_max", "sweep_interval", "batch_size")


@dataclass(frozen=True)
class OutboundSettings:
    admin_address: str = ""  # gets the circuit breaker alert; empty: the alert is only logged
    max_age: float = 3 * 86400.0  # a mail not delivered after this long fails for good
    retry_base: float = 60.0  # first retry after this long, then doubling …
    retry_max: float = 3600.0  # … up to this
    sweep_interval: float = 15.0  # how often the retry sweep runs (new mail is sent at once anyway)
    batch_size: int = 50  # rows per sweep round


@dataclass(frozen=True)
class BounceSettings:
    suppress_days: int = 30  # an address that hard-bounced gets no automatic mail this long


@dataclass(frozen=True)
class Settings:
    outbound: OutboundSettings
    loop: Limits
    bounces: BounceSettings
    template_dirs: tuple[Path, ...]  # the admin's directory first, then the shipped templates (may not exist)


def parse(config: Config, shipped: Path) -> Settings:
    """Read and check the sections; raise ConfigError naming file and key."""
    out = Table(config.raw.get("outbound"), config.path, "outbound")
    admin = out.address("admin_address") if out.has("admin_address") and out.data["admin_address"] else ""
    retry_base = out.duration("retry_base", "1m")
    outbound = OutboundSettings(
        admin_address=admin,
        max_age=out.duration("max_age", "3d"),
        retry_base=retry_base,
        retry_max=max(retry_base, out.duration("retry_max", "1h")),
        sweep_interval=out.duration("sweep_interval", "15s"),
        batch_size=out.int("batch_size", 50, minimum=1),
    )
    if outbound.sweep_interval <= 0:
        raise out.error("sweep_interval", "expected a duration > 0")
    if retry_base <= 0:
        raise out.error("retry_base", "expected a duration > 0")

    lp = Table(config.raw.get("loop"), config.path, "loop")
    loop = Limits(
        per_sender_per_hour=lp.int("max_autoreplies_per_sender_per_hour", 3, minimum=0),
        per_ticket_limit=lp.int("per_ticket_limit", 30, minimum=0),
        per_ticket_window=lp.duration("per_ticket_window", "1h"),
        system_limit=lp.int("system_limit", 500, minimum=0),
        system_window=lp.duration("system_window", "10m"),
    )
    lp.finish()

    bo = Table(config.raw.get("bounces"), config.path, "bounces")
    bounces = BounceSettings(suppress_days=bo.int("suppress_days", 30, minimum=0))
    bo.finish()

    tp = Table(config.raw.get("templates"), config.path, "templates")
    explicit = tp.has("dir")
    directory = tp.path("dir", "templates", config.base_dir)
    tp.finish()
    if explicit and not directory.is_dir():
        raise tp.error("dir", f"no such directory: {directory}")
    # Kept even when missing: a directory created later is picked up by the next reload (SIGHUP).
    dirs = tuple(dict.fromkeys(d.resolve() for d in (directory, shipped)))
    return Settings(outbound=outbound, loop=loop, bounces=bounces, template_dirs=dirs)
