"""SLA targets and the timers' settings: the ``[sla]`` config section and deadline arithmetic.

Pure: parses config and computes deadlines; it reads no clock and does no I/O.
The sweeps (:mod:`mailgate.timers.escalation`, :mod:`mailgate.timers.sweeps`,
:mod:`mailgate.timers.digest`) act on what is decided here.

A queue's targets are durations of *open time*: around the clock unless the
queue has ``business_hours`` (a weekly schedule, a timezone, holidays; see
:mod:`mailgate.domain.business_hours`), in which case "4h" means four business
hours. A priority table overrides the queue's targets key by key::

    [sla]
    warn_before = "1h"             # warn the assignee this long before a target is missed
    sweep_interval = "1m"          # how often the sweeps run
    priorities = ["low", "normal", "high", "urgent"]   # escalation raises one step
    digest_at = "08:00"            # daily digest time (queue's timezone), "" = off
    pending_reminder_days = 3      # remind the customer of a pending ticket, 0 = off
    pending_resolve_days = 4       # then resolve it this many days later, 0 = never
    close_notice = false           # mail the customer when a resolved ticket is closed

    [sla.queues.support]
    first_response = "4h"
    resolution = "3d"
    business_hours = { timezone = "Europe/Paris", hours = { mon = "09:00-17:00" }, holidays = [] }

    [sla.queues.support.priority.urgent]
    first_response = "1h"

Closing resolved tickets uses ``[lifecycle] reopen_days`` (default 7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from mailgate.config import Config, Table
from mailgate.domain.business_hours import Schedule, add_business_time, business_time_between
from mailgate.domain.lifecycle import PRIORITIES

if TYPE_CHECKING:
    from mailgate.app import Runtime

DEFAULT_PRIORITIES = PRIORITIES
TARGETS = ("first_response", "resolution")


@dataclass(frozen=True)
class Targets:
    """How much open time a ticket may take; None means no target."""

    first_response: timedelta | None = None
    resolution: timedelta | None = None

    def merged(self, override: Targets) -> Targets:
        return Targets(override.first_response or self.first_response, override.resolution or self.resolution)


@dataclass(frozen=True)
class QueueSla:
    name: str
    schedule: Schedule
    targets: Targets
    by_priority: Mapping[str, Targets] = field(default_factory=dict)
    business_hours: bool = False

    def targets_for(self, priority: str) -> Targets:
        override = self.by_priority.get(priority)
        return self.targets.merged(override) if override is not None else self.targets


@dataclass(frozen=True)
class Deadlines:
    first_response: datetime | None
    resolution: datetime | None


@dataclass(frozen=True)
class SlaConfig:
    queues: Mapping[str, QueueSla] = field(default_factory=dict)
    warn_before: timedelta = timedelta(hours=1)
    sweep_interval: float = 60.0
    priorities: tuple[str, ...] = DEFAULT_PRIORITIES
    digest_at: time | None = None
    timezone: str = "UTC"
    pending_reminder_days: int = 3
    pending_resolve_days: int = 4
    close_notice: bool = False
    reopen_days: int = 7

    def schedule(self, queue: str) -> Schedule:
        """The queue's business hours, or around the clock."""
        sla = self.queues.get(queue)
        return sla.schedule if sla is not None else Schedule.always()

    def timezone_of(self, queue: str) -> str:
        sla = self.queues.get(queue)
        return sla.schedule.timezone if sla is not None and sla.business_hours else self.timezone

    def deadlines(self, queue: str, priority: str, created_at: datetime) -> Deadlines:
        """When a ticket opened at ``created_at`` must be answered and resolved."""
        sla = self.queues.get(queue)
        if sla is None:
            return Deadlines(None, None)
        targets = sla.targets_for(priority)
        return Deadlines(
            add_business_time(created_at, targets.first_response, sla.schedule) if targets.first_response else None,
            add_business_time(created_at, targets.resolution, sla.schedule) if targets.resolution else None,
        )

    def elapsed(self, queue: str, start: datetime, end: datetime) -> timedelta:
        """Open time between two instants (the report's response and resolution times)."""
        return business_time_between(start, end, self.schedule(queue))

    def raised(self, priority: str) -> str:
        """The priority one step up the ladder (the top stays the top; unknown ones go to the top)."""
        if priority not in self.priorities:
            return self.priorities[-1]
        return self.priorities[min(self.priorities.index(priority) + 1, len(self.priorities) - 1)]


def parse_sla(config: Config) -> SlaConfig:
    """Read ``[sla]`` (and ``[lifecycle] reopen_days``); raise ConfigError naming file and key."""
    table = Table(config.raw.get("sla"), config.path, "sla")
    priorities = table.str_list("priorities", list(DEFAULT_PRIORITIES))
    if not priorities or len(set(priorities)) != len(priorities):
        raise table.error("priorities", "expected a non-empty list of distinct names, lowest first")
    digest_text = table.str("digest_at", "")
    timezone = table.str("timezone", "UTC")
    try:
        Schedule(timezone, {0: ((time(0), time(0)),)})
    except ValueError as exc:
        raise table.error("timezone", str(exc).removeprefix("timezone: ")) from None
    sla = SlaConfig(
        warn_before=timedelta(seconds=table.duration("warn_before", "1h")),
        sweep_interval=max(1.0, table.duration("sweep_interval", "1m")),
        priorities=priorities,
        digest_at=_clock(table, "digest_at", digest_text) if digest_text else None,
        timezone=timezone,
        pending_reminder_days=table.int("pending_reminder_days", 3, minimum=0),
        pending_resolve_days=table.int("pending_resolve_days", 4, minimum=0),
        close_notice=table.bool("close_notice", False),
        reopen_days=_reopen_days(config),
        queues=_queues(table.table("queues"), config, priorities),
    )
    table.finish()
    return sla


def _queues(table: Table, config: Config, priorities: tuple[str, ...]) -> dict[str, QueueSla]:
    known = {q.name for q in config.queues} | {config.support.default_queue}
    queues = {}
    for name in table.data:
        section = table.table(name)
        if config.queues and name not in known:
            raise section.error("", f"no such queue (known: {', '.join(sorted(known))})")
        targets = _targets(section)
        business = section.has("business_hours")
        schedule = Schedule.always()
        if business:
            schedule = Schedule.from_config(
                section._get("business_hours", {}), f"{section.file}: {section.where}.business_hours"
            )
        by_priority = {}
        levels = section.table("priority")
        for level in levels.data:
            if level not in priorities:
                raise levels.error(level, f"unknown priority; expected one of {', '.join(priorities)}")
            sub = levels.table(level)
            by_priority[level] = _targets(sub)
            sub.finish()
        levels.finish()
        section.finish()
        queues[name] = QueueSla(name, schedule, targets, by_priority, business)
    table.finish()
    return queues


def _targets(section: Table) -> Targets:
    def one(key: str) -> timedelta | None:
        if not section.has(key):
            section._seen.add(key)
            return None
        seconds = section.duration(key, 0)
        if seconds <= 0:
            raise section.error(key, "expected a duration > 0 such as 4h (leave the key out for no target)")
        return timedelta(seconds=seconds)

    return Targets(one("first_response"), one("resolution"))


def _clock(table: Table, key: str, text: str) -> time:
    try:
        hour, minute = (int(part) for part in text.split(":"))
        return time(hour, minute)
    except ValueError:
        raise table.error(key, f"expected a time of day HH:MM such as 08:00, got {text!r}") from None


def _reopen_days(config: Config) -> int:
    """``[lifecycle] reopen_days``: the lifecycle module owns and checks that section."""
    from mailgate.domain.lifecycle import parse_settings

    return parse_settings(config).reopen_days


def sla_of(runtime: Runtime) -> SlaConfig:
    """The parsed section, cached on the runtime's services by the sweeps plugin."""
    cached = runtime.services.sla
    if cached is None:
        cached = runtime.services.sla = parse_sla(runtime.services.config)
    return cached
