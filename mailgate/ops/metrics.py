"""Prometheus metrics and ``/healthz`` on ``[metrics] listen`` (off unless configured).

::

    [metrics]
    listen = "127.0.0.1:9425"   # host:port; leave the section out to serve nothing

Prometheus' client library is imported only when metrics are on. Counters
are fed by hooks the core calls (the SMTP door's verdicts, the
worker's committed outcomes, the SLA sweep's escalations); gauges that
describe shared state (spool depth, outbox backlog and failures) are read
when Prometheus scrapes, so every daemon reports the truth and not its own
guess. Each runtime has a registry of its own (tests build many runtimes).
The names are listed in docs/operations.md.

The HTTP side is a few lines of asyncio: GET only, one request per
connection, bounded reads; blocking work (database, spool probe) runs in a
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from mailgate.config import Table
from mailgate.context import installed
from mailgate.ops import health
from mailgate.ops.node import node_name
from mailgate.storage.models import Outbox

if TYPE_CHECKING:
    from mailgate.app import Runtime
    from mailgate.pipeline.outcome import Committed

log = logging.getLogger("mailgate.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The instruments of one process."""

    def __init__(self, runtime: Runtime) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "mailgate_messages_received",
            "Messages through the pipeline, by door and verdict",
            ["adapter", "verdict"],
            registry=r,
        )
        self.smtp = Counter(
            "mailgate_smtp_transactions", "SMTP answers: accepted, rejected, refused, tempfail", ["verdict"], registry=r
        )
        self.tickets = Counter("mailgate_tickets_created", "Tickets opened by incoming mail", registry=r)
        self.latency = Histogram(
            "mailgate_pipeline_latency_seconds",
            "From spooled to committed in the database",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaches = Counter(
            "mailgate_sla_breaches", "SLA targets missed (escalations)", ["queue", "target"], registry=r
        )
        r.register(StateCollector(runtime))
        from prometheus_client import Info

        Info(
            "mailgate_node", "This daemon's [mailgate] node name (one per machine on a shared database)", registry=r
        ).info({"node": node_name(runtime.config)})

    def count_smtp(self, verdict: str) -> None:
        self.smtp.labels(verdict).inc()

    def committed(self, outcomes: list[Any]) -> None:
        self.count_committed([outcome.summary() for outcome in outcomes])

    def count_committed(self, mails: Iterable[Committed]) -> None:
        """The mails of a committed batch: this process's, or a worker process's (sent to its daemon)."""
        now = time.time()
        for mail in mails:
            self.received.labels(mail.source, mail.verdict).inc()
            if mail.new_ticket:
                self.tickets.inc()
            spooled = spooled_at(mail.spool_id)
            if spooled is not None and mail.ok:
                self.latency.observe(max(0.0, now - spooled))

    def sla_breach(self, queue: str, target: str) -> None:
        self.breaches.labels(queue, target).inc()

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def spooled_at(spool_id: str) -> float | None:
    """When a spool entry was written: its id starts with ``time.time_ns()`` (see ``spool.new_id``)."""
    head = spool_id.split("-", 1)[0]
    return int(head) / 1e9 if head.isdigit() and len(head) >= 19 else None


class StateCollector:
    """Gauges read at scrape time from the spool and the database (a prometheus_client collector)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        depth = GaugeMetricFamily("mailgate_spool_depth", "Spool entries by state", labels=["state"])
        for state, count in self.runtime.spool.depth().items():
            depth.add_metric([state], count)
        yield depth
        status = health.database_status(self.runtime.services)
        yield GaugeMetricFamily(
            "mailgate_database_up",
            "1 while the worker can write to the database, 0 while it holds the spool for an outage",
            value=1 if status.up else 0,
        )
        yield CounterMetricFamily(
            "mailgate_database_outages", "Database outages the worker has waited out", value=status.outages
        )
        try:
            with self.runtime.sessions() as session:
                rows = dict(session.execute(select(Outbox.status, func.count(Outbox.id)).group_by(Outbox.status)).all())
        except Exception as exc:  # the database is down: /healthz says so; the other metrics still count
            log.warning("metrics: outbox not readable", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        yield GaugeMetricFamily(
            "mailgate_outbox_backlog", "Outgoing mails waiting to be sent", value=rows.get("pending", 0)
        )
        yield GaugeMetricFamily(
            "mailgate_outbox_failed", "Outgoing mails that failed for good", value=rows.get("failed", 0)
        )
        by_status = GaugeMetricFamily("mailgate_outbox_messages", "Outbox rows by status", labels=["status"])
        for state, count in sorted(rows.items()):
            by_status.add_metric([state], count)
        yield by_status


def parse_listen(config: Any) -> tuple[str, int] | None:
    table = Table(config.raw.get("metrics"), config.path, "metrics")
    listen = table.listen("listen", "127.0.0.1:9425") if table.has("listen") else None
    table.finish()
    return listen


def install(runtime: Runtime) -> None:
    """Validate ``[metrics]``; when it is on, hook the counters into the door, the worker and the SLA sweep.

    Off (the default), nothing is counted and prometheus_client is not even
    imported, so a ``mailgate ingest`` run by an MTA pays nothing for it.
    """
    services = runtime.services
    services.metrics_listen = parse_listen(runtime.config)
    if services.metrics_listen is None:
        return
    metrics = services.metrics = Metrics(runtime)
    services.count_smtp = _both(services.count_smtp, metrics.count_smtp)
    services.on_committed = _both(services.on_committed, metrics.committed)
    services.on_sla_breach = _both(services.on_sla_breach, metrics.sla_breach)


def _both(first: Callable[..., Any] | None, second: Callable[..., Any]) -> Callable[..., Any]:
    """Compose hooks: whatever another module set runs first, then ours; ours never breaks theirs."""
    if first is None:
        return second

    def hook(*args: Any) -> None:
        first(*args)
        try:
            second(*args)
        except Exception:
            log.exception("metrics hook failed")

    return hook


async def start(runtime: Runtime, stop: asyncio.Event) -> None:
    listen = runtime.services.metrics_listen
    if listen is None:
        await stop.wait()
        return
    metrics = installed(runtime.services.metrics, "mailgate.ops.metrics")
    server = await asyncio.start_server(lambda r, w: _serve_one(r, w, runtime, metrics), listen[0], listen[1])
    host, port = server.sockets[0].getsockname()[:2]
    log.info("metrics listening", extra={"addr": f"{host}:{port}"})
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5)


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, runtime: Runtime, metrics: Metrics
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        method, path = [*head.split(b"\r\n", 1)[0].decode("latin-1").split(" "), "", ""][:2]
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
        writer.close()
        return
    try:
        status, body, ctype = await _route(method, path.split("?", 1)[0], runtime, metrics)
    except Exception as exc:
        log.exception("metrics endpoint failed")
        status, body, ctype = 500, f"{type(exc).__name__}\n".encode(), "text/plain"
    reason = {
        200: "OK",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + (body if method != "HEAD" else b"")
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def _route(method: str, path: str, runtime: Runtime, metrics: Metrics) -> tuple[int, bytes, str]:
    if method not in ("GET", "HEAD"):
        return 405, b"GET only\n", "text/plain"
    if path == "/metrics":
        return 200, await asyncio.to_thread(metrics.render), CONTENT_TYPE
    if path == "/healthz":
        healthy, results = await asyncio.to_thread(health.check, runtime)
        body = "".join(f"{name}: {result}\n" for name, result in results.items()).encode()
        body += f"node: {node_name(runtime.config)}\n".encode()  # which daemon answered (mailgate.ops.node)
        return (200 if healthy else 503), body, "text/plain; charset=utf-8"
    return 404, b"not found: try /metrics or /healthz\n", "text/plain"
