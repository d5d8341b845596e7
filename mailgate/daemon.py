"""``mailgate serve``: the SMTP door, the pipeline worker and the plugins' tasks in one loop.

Start-up: schema check (an empty database is created), spool recovery (what a
crash left in work/ goes back to incoming/ and is processed first), then the
listener. SIGTERM/SIGINT: stop accepting, let every DATA in hand finish and
be answered, let the worker finish its batch, then exit 0. Blocking work
(fsync, database) runs in threads, never in the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from mailgate import sdnotify
from mailgate.app import Runtime
from mailgate.smtp_intake import IntakeHandler, smtp_factory
from mailgate.worker import Worker

log = logging.getLogger("mailgate.daemon")


class _CountingHandler(IntakeHandler):
    """Tracks DATA commands in hand, so shutdown can wait for their answers; refuses new ones when stopping."""

    in_flight = 0
    stopping = False

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
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


async def _worker_loop(worker: Worker, wake: asyncio.Event, stop: asyncio.Event) -> None:
    backoff = 0.5
    while True:
        wake.clear()
        try:
            done = await asyncio.to_thread(worker.process_available)
            backoff = 0.5
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


async def serve(runtime: Runtime, *, ready: Callable[[str], None] | None = None) -> None:
    config = runtime.config
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    wake = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hup_handlers: list[Callable[[], None]] = [h for m in runtime.plugins if (h := getattr(m, "reload", None))]

    def _reload() -> None:
        log.info("SIGHUP: reloading rule files and templates")
        for handler in hup_handlers:
            try:
                handler(runtime)
            except Exception:
                log.exception("reload failed; the previous version stays in force")

    loop.add_signal_handler(signal.SIGHUP, _reload)

    recovered = runtime.spool.recover()
    if recovered:
        log.info("recovered spool entries left in work by a crash", extra={"count": recovered})
    worker = Worker(runtime.spool, runtime.sessions, runtime.services,
                    on_committed=runtime.services.extras.get("on_committed"))
    runtime.services.extras["wake_worker"] = wake.set
    counter = runtime.services.extras.get("count_smtp", lambda verdict: None)
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
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(_worker_loop(worker, wake, worker_stop), name="worker")]
    for module in runtime.plugins:
        start: Callable[[Runtime, asyncio.Event], Awaitable[None]] | None = getattr(module, "start", None)
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
    sdnotify.stopping()
    log.info("stopping: no new connections; finishing the messages in hand")
    handler.stopping = True
    if server is not None:
        server.close()
    for _ in range(int(SHUTDOWN_GRACE * 10)):
        if handler.in_flight == 0 and not any(_in_transaction(p) for p in protocols):
            break
        await asyncio.sleep(0.1)
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()
    worker_stop.set()
    wake.set()
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task ended with an error", extra={"task": task.get_name(), "error": repr(task.exception())})
    log.info("stopped")


SHUTDOWN_GRACE = 30.0  # seconds a mail already being transmitted may take to finish


def _in_transaction(protocol: Any) -> bool:
    """A session between MAIL FROM and the answer to its DATA: a mail in hand."""
    transport = getattr(protocol, "transport", None)
    envelope = getattr(protocol, "envelope", None)
    return bool(transport is not None and not transport.is_closing() and envelope is not None
                and envelope.mail_from)


async def _watchdog(interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        sdnotify.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
