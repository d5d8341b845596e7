"""The pipeline in worker processes beside the door (``[spool] workers``, default ``"auto"``).

A pipeline in the door's interpreter shares one core's worth of it with the
door; with ``workers = N`` the daemon starts N processes (``python -m
mailgate.workers``), each with its own engine, session and batch transaction,
all taking entries from the one spool. ``"auto"`` is one per core but the
door's (at least one); ``workers = 0`` keeps the pipeline in the daemon's own
process, the smallest footprint.

Exactly once and in order, across processes:

* A claim is a rename into the worker's own folder, ``spool/work/<w>/``: of two
  processes renaming one entry exactly one succeeds, so no entry is processed
  twice at once.
* Entries are routed by a stable key, the root of the conversation as the
  headers name it (:func:`thread_key`: the first References id, else
  In-Reply-To, else the subject token, else the mail's own Message-ID). A first
  mail and its follow-ups share that key, so one worker takes them, in arrival
  order, and a follow-up arriving with its first mail still threads: it is
  processed after it, in the same transaction or a later one.
* A worker process that dies leaves its claims in its own folder; the daemon
  puts exactly those back (each charged one ``claims``, once per death: see
  ``[spool] max_claims``) and starts it again. Entries of the other workers are
  not touched.
* SIGTERM and SIGHUP reach every worker: the daemon forwards them. A worker
  stops after its batch (it drains what is ready first, like the in-process
  worker); on SIGHUP it reloads rules and templates between two batches. A
  worker whose daemon is gone (its stdin closes) stops too.

The daemon wakes the workers by writing a byte to their stdin when a mail is
spooled. A worker tells its daemon, one JSON object a line on its stdout, what
only the daemon can serve or act on: after each commit the mails it committed
(``{"committed": [[source, verdict, new_ticket, spool_id, ok], …]}``: the
daemon's sender wakes for their outbox rows and its ``/metrics`` counts them),
and a database outage as it begins and ends (``{"database": "down", "reason":
…}``, ``{"database": "up"}``: the daemon's ``/healthz`` says so while any
worker holds the spool). A rule file that changes is reloaded by the daemon's
watcher, which then sends every worker a SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailgate.spool.disk import SpoolEntry

if TYPE_CHECKING:
    from mailgate.app import Runtime
    from mailgate.config import Config
    from mailgate.pipeline.outcome import Outcome
    from mailgate.pipeline.worker import Worker

log = logging.getLogger("mailgate.workers")

HEAD_BYTES = 16384  # the headers the key is read from
_HEADER = re.compile(rb"^(references|in-reply-to|subject|message-id):[ \t]*(.*(?:\r?\n[ \t].*)*)", re.I | re.M)
_MSGID = re.compile(rb"<[^<>\s]+>")
_TOKEN = re.compile(rb"\[[^\[\]\s#]*#(\d+)\]")


def thread_key(head: bytes) -> str:
    """The conversation a mail belongs to, as far as its headers say, without parsing it.

    The same for a first mail and every reply to it (RFC 5322 keeps the root
    first in References); a mail with none of these headers keys on its bytes.
    """
    end = head.find(b"\n\n")
    end2 = head.find(b"\r\n\r\n")
    cut = min(e for e in (end, end2, len(head)) if e >= 0)
    found: dict[bytes, bytes] = {}
    for match in _HEADER.finditer(head[:cut]):
        found.setdefault(match.group(1).lower(), match.group(2))
    for name in (b"references", b"in-reply-to"):
        ids = _MSGID.findall(found.get(name, b""))
        if ids:
            return ids[0].decode("ascii", "replace").lower()
    token = _TOKEN.search(found.get(b"subject", b""))
    if token:
        return f"#{int(token.group(1))}"
    ids = _MSGID.findall(found.get(b"message-id", b""))
    if ids:
        return ids[0].decode("ascii", "replace").lower()
    return f"sha:{zlib.crc32(head)}"


def share_of(key: str, count: int) -> int:
    """The worker (0 … count-1) a key belongs to: the same in every process and every start."""
    return zlib.crc32(key.encode("utf-8", "replace")) % count


class Router:
    """``Worker.accepts`` of worker ``index`` of ``count``: reads each entry's head once."""

    def __init__(self, index: int, count: int) -> None:
        self.index, self.count = index, count
        self._shares: dict[str, int] = {}

    def __call__(self, entry: SpoolEntry) -> bool:
        share = self._shares.get(entry.id)
        if share is None:
            try:
                with open(entry.eml, "rb") as handle:
                    handle.readline()  # the envelope line
                    head = handle.read(HEAD_BYTES)
            except OSError:
                return False  # claimed or settled meanwhile
            if len(self._shares) > 100_000:
                self._shares.clear()
            share = self._shares[entry.id] = share_of(thread_key(head), self.count)
        return share == self.index


def worker_name(index: int) -> str:
    return f"w{index}"


# -- the worker process ---------------------------------------------------------------------------


class _Signals:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.reload = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        signal.signal(signal.SIGINT, lambda *_: self._stop())
        signal.signal(signal.SIGHUP, lambda *_: self._reload())
        threading.Thread(target=self._read_stdin, name="wake", daemon=True).start()

    def _stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def _reload(self) -> None:
        self.reload = True
        self.wake.set()

    def _read_stdin(self) -> None:
        """A byte: a mail was spooled. End of file: the daemon is gone, stop.

        The raw descriptor, not sys.stdin: a daemon thread blocked in a buffered read holds the
        buffer's lock, and the interpreter aborts at exit when it cannot take it."""
        try:
            while os.read(0, 4096):
                self.wake.set()
        except OSError:
            pass
        self._stop()


def _reload(runtime: Runtime) -> None:
    log.info("SIGHUP: reloading rule files and templates")
    for module in runtime.plugins:
        handler: Callable[[Runtime], None] | None = getattr(module, "reload", None)
        if handler is None:
            continue
        try:
            handler(runtime)
        except Exception:
            log.exception("reload failed; the previous version stays in force")


def _tell_daemon(message: dict[str, Any]) -> None:
    """One line to the daemon (see the module's docstring); a daemon that is gone is no error here."""
    try:
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _database_down(reason: str) -> None:
    """Logged once an outage, and told to the daemon, whose /healthz says so."""
    log.error("database unavailable: holding the spool, no mail is charged", extra={"error": reason})
    _tell_daemon({"database": "down", "reason": reason})


def _database_back(lasted: float | None) -> None:
    extra = {"outage_seconds": round(lasted, 1)} if lasted is not None else {}
    log.warning("database back: taking mail again", extra=extra)
    _tell_daemon({"database": "up"})


def run_loop(worker: Worker, runtime: Runtime, signals: _Signals) -> None:
    """Batches until stopped and nothing is ready; an outage waits for the database, charging nobody."""
    from mailgate.pipeline.worker import DatabaseUnavailable

    worker.warm_up()
    backoff = 0.5
    while True:
        if signals.reload:
            signals.reload = False
            _reload(runtime)
        signals.wake.clear()
        try:
            done = worker.process_available()
            backoff = 0.5
        except DatabaseUnavailable as exc:
            if worker.status.down(str(exc)):
                _database_down(str(exc))
            while not signals.stop.wait(backoff) and worker.probe():
                backoff = min(backoff * 2, 30.0)
            if signals.stop.is_set():
                return
            _database_back(worker.status.back())
            continue
        except Exception:
            log.exception("worker batch failed; retrying", extra={"backoff": backoff})
            signals.stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
            done = 0
        if done:
            continue
        if signals.stop.is_set():
            return
        signals.wake.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailgate-worker", description="one pipeline worker of `mailgate serve`")
    parser.add_argument("--config", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--log-level")
    parser.add_argument("--plugin", action="append", default=[], help="a [daemon] plugin to install (repeatable)")
    args = parser.parse_args(argv)
    _die_with_the_daemon()
    signals = _Signals()
    signals.install()  # before the slow imports: a SIGTERM during start-up stops it cleanly

    from mailgate.config import load_config
    from mailgate.ops import logs
    from mailgate.ops.node import node_name
    from mailgate.pipeline.worker import Worker
    from mailgate.spool.disk import Spool

    config = load_config(args.config)
    logs.setup(args.log_level or config.log_level, config.log_format, node_name(config))  # as the daemon's lines
    runtime = _build_when_the_database_answers(config, tuple(args.plugin), signals)
    if runtime is None:
        return 0  # stopped while the database was away
    spool = Spool(config.spool_dir, worker=worker_name(args.index))
    spool.ensure()
    worker = Worker(spool, runtime.sessions, runtime.services, on_committed=_chain(runtime))
    worker.accepts = Router(args.index, args.count) if args.count > 1 else None
    log.info("worker started", extra={"worker": worker_name(args.index), "of": args.count})
    try:
        run_loop(worker, runtime, signals)
    finally:
        runtime.close()
    log.info("worker stopped", extra={"worker": worker_name(args.index)})
    return 0


def _build_when_the_database_answers(config: Config, plugins: tuple[str, ...], signals: _Signals) -> Runtime | None:
    """The worker's runtime, with the ``[daemon] plugins`` (their pipeline steps run here).

    Building reads the installation's key from the database: a worker (re)started while the
    database is away waits for it, as a running one does, instead of dying again and again.
    The daemon checked the schema and the templates before starting us (each reload checks them again).
    """
    from mailgate.app import build, install_plugins
    from mailgate.ops.health import is_outage
    from mailgate.pipeline.worker import describe_error

    backoff, away = 0.5, False
    while True:
        try:
            runtime = build(config, create_schema=False, check_templates=False)
            install_plugins(runtime, plugins)
        except Exception as exc:
            if not is_outage(exc):
                raise
            if not away:
                away = True
                _database_down(describe_error(exc))
            if signals.stop.wait(backoff):
                return None
            backoff = min(backoff * 2, 30.0)
            continue
        if away:
            _database_back(None)
        return runtime


def _chain(runtime: Runtime) -> Callable[[list[Outcome]], None]:
    hook = runtime.services.on_committed

    def committed(outcomes: list[Outcome]) -> None:
        if hook is not None:
            hook(outcomes)
        _tell_daemon({"committed": [list(outcome.summary()) for outcome in outcomes]})

    return committed


def _die_with_the_daemon() -> None:
    """Linux: the kernel kills this worker when its daemon dies, as a kill -9 kills an in-process worker:
    its claims stay in its folder and go back at the next start, and no orphan goes on alone."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


if __name__ == "__main__":
    sys.exit(main())
