"""``mailgate serve``: the SMTP door, the pipeline worker and the plugins' tasks in one loop.

Start-up: schema check (an empty database is created), spool recovery (what a
crash left in work/ goes back to incoming/ and is processed first), then the
listener. SIGTERM/SIGINT: stop accepting, let every DATA in hand finish and
be answered, let the worker finish its batch, then exit 0, all within
``[daemon] stop_grace``. A thread cannot be interrupted, so a mail still
mid-pipeline when the grace is spent is left where it is: the process flushes
its logs and leaves with ``os._exit``; the entry is in spool/work/ and goes
back to incoming/ at the next start (its claim counted: see worker.py).
Blocking work (fsync, database) runs in threads, never in the event loop,
and the interpreter lets a waiting thread in every half millisecond
(:data:`SWITCH_INTERVAL`), so the door answers while the pipeline works.

When the database is away the worker holds the spool and probes it with
capped exponential backoff, logging once when it goes and once when it is back.

::

    [daemon]
    stop_grace = "20s"   # SIGTERM to exit, whatever is in hand (below systemd's TimeoutStopSec=30)
    plugins = []         # extra modules installed like the built-in ones: install(runtime), start(runtime, stop)

The pipeline runs in ``[spool] workers`` worker processes beside this one
(:mod:`mailgate.workers`; default ``"auto"``: one per core but the door's), or
in this one with ``workers = 0`` (one interpreter: the least memory, and the
door and the pipeline share one core's worth of it): the daemon starts them after
the spool recovery, forwards SIGTERM and SIGHUP to them, restarts one that
dies (its claimed entries back in the spool first) and kills those still busy
when the grace is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from mailgate.app import Runtime, install_plugins
from mailgate.config import Config, Table
from mailgate.doors.smtp import IntakeHandler, smtp_factory
from mailgate.ops import sdnotify
from mailgate.ops.health import database_status
from mailgate.pipeline.outcome import Committed
from mailgate.pipeline.worker import DatabaseUnavailable, Worker
from mailgate.supervisor import Supervisor

log = logging.getLogger("mailgate.daemon")


class _CountingHandler(IntakeHandler):
    """Tracks DATA commands in hand, so shutdown can wait for their answers; refuses new ones when stopping."""

    in_flight = 0
    stopping = False

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        if self.stopping:
            return "421 4.3.2 Service shutting down, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_flight += 1
        try:
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.in_flight -= 1


# How long a thread may hold the interpreter while another waits for it (CPython's default is 5 ms). The
# door's event loop shares the interpreter with the pipeline's thread, the sender and the spool writes: at
# 5 ms, a pipeline busy parsing held each SMTP command's answer that long, and on PostgreSQL each of a
# mail's round trips waited as long again to get the interpreter back. Measured with 16 clients: SMTP p99
# 1.4x the reference's instead of 2.2x on PostgreSQL, +5 % mails stored a second; on SQLite about even.
SWITCH_INTERVAL = 0.0005
PROBE_FIRST = 0.5  # seconds before the first probe of a database that went away
PROBE_MAX = 30.0  # the longest wait between two probes


@dataclass(frozen=True)
class DaemonSettings:
    stop_grace: float = 20.0
    plugins: tuple[str, ...] = ()


def parse_settings(config: Config) -> DaemonSettings:
    table = Table(config.raw.get("daemon"), config.path, "daemon")
    settings = DaemonSettings(stop_grace=table.duration("stop_grace", "20s"), plugins=table.str_list("plugins"))
    table.finish()
    return settings


async def _wait_for_database(worker: Worker, reason: str, stop: asyncio.Event) -> None:
    """Hold the spool until the database takes a write again (or the daemon stops); no mail is charged."""
    if worker.status.down(reason):
        log.error("database unavailable: holding the spool, no mail is charged", extra={"error": reason})
    delay = PROBE_FIRST
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return
        problem = await asyncio.to_thread(worker.probe)
        if not problem:
            lasted = worker.status.back()
            log.warning("database back: taking mail again", extra={"outage_seconds": round(lasted or 0.0, 1)})
            return
        worker.status.down(problem)
        delay = min(delay * 2, PROBE_MAX)


async def _worker_loop(worker: Worker, wake: asyncio.Event, stop: asyncio.Event) -> None:
    await asyncio.to_thread(worker.warm_up)
    backoff = 0.5
    while True:
        wake.clear()
        try:
            done = await asyncio.to_thread(worker.process_available)
            backoff = 0.5
        except DatabaseUnavailable as exc:
            await _wait_for_database(worker, str(exc), stop)
            if stop.is_set():
                return
            continue
        except Exception:
            log.exception("worker batch failed; retrying", extra={"backoff": backoff})
            done = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30)
        if done:
            continue
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=1.0)


def share_the_interpreter() -> None:
    """Let the door answer soon while the daemon's other threads work (see :data:`SWITCH_INTERVAL`)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


async def serve(runtime: Runtime, *, ready: Callable[[str], None] | None = None) -> None:
    config = runtime.config
    share_the_interpreter()
    settings = parse_settings(config)
    install_plugins(runtime, settings.plugins)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wake = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hup_handlers: list[Callable[[Runtime], None]] = [h for m in runtime.plugins if (h := getattr(m, "reload", None))]

    def _reload() -> None:
        log.info("SIGHUP: reloading rule files and templates")
        for handler in hup_handlers:
            try:
                handler(runtime)
            except Exception:
                log.exception("reload failed; the previous version stays in force")

    supervisor: Supervisor | None = None
    if config.spool.workers >= 1:
        supervisor = Supervisor(
            config,
            runtime.spool,
            config.spool.workers,
            lambda mails: _committed_by_a_worker(runtime, mails),
            status=database_status(runtime.services),
            plugins=settings.plugins,
        )
        # a rule file the daemon's watcher reloaded is for the workers' pipelines: they reload too
        runtime.services.reload_workers = functools.partial(supervisor.signal_all, signal.SIGHUP)

    def _reload_everywhere() -> None:
        _reload()
        if supervisor is not None:
            supervisor.signal_all(signal.SIGHUP)  # every worker process reloads its rules and templates too

    loop.add_signal_handler(signal.SIGHUP, _reload_everywhere)

    recovered = runtime.spool.recover()
    if recovered:
        log.info("recovered spool entries left in work by a crash", extra={"count": recovered})
    worker = Worker(runtime.spool, runtime.sessions, runtime.services, on_committed=runtime.services.on_committed)
    runtime.services.wake_worker = wake.set
    counter = runtime.services.count_smtp or (lambda verdict: None)
    handler = _CountingHandler(config.support, runtime.spool, on_spooled=wake.set, counter=counter)
    protocols: list[Any] = []
    factory = smtp_factory(config, handler)

    def tracked() -> Any:
        protocol = factory()
        protocols.append(protocol)
        if len(protocols) > 256:
            protocols[:] = [p for p in protocols if p.transport is not None and not p.transport.is_closing()]
        return protocol

    worker_stop = asyncio.Event()  # set only once the mails in hand are spooled, so the worker stores them too
    pipeline = _worker_loop(worker, wake, worker_stop) if supervisor is None else supervisor.run(wake, worker_stop)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(pipeline, name="worker")]
    for module in runtime.plugins:
        start: Callable[[Runtime, asyncio.Event], Coroutine[Any, Any, None]] | None = getattr(module, "start", None)
        if start is not None:
            tasks.append(asyncio.create_task(start(runtime, stop), name=module.__name__))

    server = None
    if config.smtp.enabled:
        server = await loop.create_server(tracked, config.smtp.host, config.smtp.port)
        host, port = server.sockets[0].getsockname()[:2]
        log.info("listening", extra={"addr": f"{host}:{port}", "smtp": "on"})
        if ready:
            ready(f"{host}:{port}")
    else:
        log.info("listening", extra={"smtp": "off"})
    sdnotify.ready()
    watchdog = sdnotify.watchdog_interval()
    if watchdog:
        tasks.append(asyncio.create_task(_watchdog(watchdog / 2, stop), name="watchdog"))

    await stop.wait()
    deadline = loop.time() + settings.stop_grace
    sdnotify.stopping()
    log.info("stopping: no new connections; finishing the messages in hand")
    handler.stopping = True
    if server is not None:
        server.close()
    while loop.time() < deadline - settings.stop_grace / 2:  # half the grace for the mails being received
        if handler.in_flight == 0 and not any(_in_transaction(p) for p in protocols):
            break
        await asyncio.sleep(0.1)
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()
    if supervisor is not None:
        supervisor.deadline = deadline
    worker_stop.set()
    wake.set()
    done, pending = await asyncio.wait(tasks, timeout=max(0.1, deadline - loop.time()))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task ended with an error", extra={"task": task.get_name(), "error": repr(task.exception())})
    if pending:
        # a thread (a mail mid-pipeline, a delivery) cannot be interrupted and would hold the exit
        log.error(
            "stop grace spent: exiting with work in hand; it goes back to the spool at the next start",
            extra={"tasks": ",".join(sorted(t.get_name() for t in pending)), "grace": settings.stop_grace},
        )
        log.info("stopped")
        logging.shutdown()
        os._exit(0)
    log.info("stopped")


def _committed_by_a_worker(runtime: Runtime, mails: list[Committed]) -> None:
    """A worker process committed: its outbox rows are for this process's sender, its mails for our metrics."""
    waker = runtime.services.wake_sender
    if waker is not None:
        waker()
    metrics = runtime.services.metrics
    if metrics is not None:
        metrics.count_committed(mails)


def _in_transaction(protocol: Any) -> bool:
    """A session between MAIL FROM and the answer to its DATA: a mail in hand."""
    transport = getattr(protocol, "transport", None)
    envelope = getattr(protocol, "envelope", None)
    return bool(transport is not None and not transport.is_closing() and envelope is not None and envelope.mail_from)


async def _watchdog(interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        sdnotify.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
