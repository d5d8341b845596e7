"""Timers are sweeps: APScheduler runs each registered sweep at its interval.

A sweep is an idempotent function over database state ("deliver what is due",
"escalate what is overdue and not yet escalated"), never one job per ticket,
so a restart loses no timer and several daemons can run the same sweep. A
module registers its sweeps at install time with :func:`register`; the
daemon starts one scheduler for all of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.scheduler")


@dataclass(frozen=True)
class Sweep:
    name: str
    interval: float  # seconds
    run: Callable[[Runtime], object]  # run(runtime), blocking; runs in a thread


def register(runtime: Runtime, sweep: Sweep) -> None:
    runtime.services.sweeps.append(sweep)


def run_all_once(runtime: Runtime) -> None:
    """Run every registered sweep once, in order (tests and `mailgate` commands)."""
    for sweep in runtime.services.sweeps:
        sweep.run(runtime)


def install(runtime: Runtime) -> None:
    """Nothing to add: sweeps are registered by the modules that own them."""


async def start(runtime: Runtime, stop: asyncio.Event) -> None:
    sweeps: list[Sweep] = runtime.services.sweeps
    if not sweeps:
        await stop.wait()
        return
    scheduler = AsyncIOScheduler(timezone=UTC)
    for sweep in sweeps:
        scheduler.add_job(
            _runner(sweep, runtime),
            "interval",
            seconds=sweep.interval,
            id=sweep.name,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
            misfire_grace_time=max(1, int(sweep.interval)),
        )
    scheduler.start()
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)


def _runner(sweep: Sweep, runtime: Runtime) -> Callable[[], object]:
    async def run() -> None:
        try:
            await asyncio.to_thread(sweep.run, runtime)
        except Exception:
            log.exception("sweep failed; it runs again at its next interval", extra={"sweep": sweep.name})

    return run
