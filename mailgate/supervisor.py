"""The daemon's side of the worker processes (:mod:`mailgate.workers` tells how they work together).

Started, woken, signalled, listened to, restarted, stopped within the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailgate.pipeline.outcome import Committed
from mailgate.workers import worker_name

if TYPE_CHECKING:
    from mailgate.config import Config
    from mailgate.ops.health import DatabaseStatus
    from mailgate.spool.disk import Spool

log = logging.getLogger("mailgate.workers")

RESTART_FIRST = 0.5  # seconds before a dead worker is started again (doubling while it keeps dying young)
RESTART_MAX = 30.0
LIVED_LONG = 60.0  # a worker that ran this long before it died is restarted at once again


class Supervisor:
    """The worker processes of one daemon: started, woken, signalled, restarted, stopped within the grace."""

    def __init__(
        self,
        config: Config,
        spool: Spool,
        count: int,
        on_committed: Callable[[list[Committed]], None],
        status: DatabaseStatus | None = None,
        plugins: tuple[str, ...] = (),
    ) -> None:
        self.config, self.spool, self.count = config, spool, count
        self.plugins = plugins  # [daemon] plugins: their pipeline steps run in the workers too
        self.on_committed = on_committed
        self.status = status  # the daemon's: down while any worker holds the spool for an outage
        self.down: dict[int, str] = {}  # the workers that said the database is down, and why
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.started = 0  # processes started, restarts included
        self.deadline: float | None = None  # loop time by which every worker must be gone (set at shutdown)
        self._stopping = False

    async def run(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        keepers = [asyncio.create_task(self._keep(i), name=f"worker-{i}") for i in range(self.count)]
        waker = asyncio.create_task(self._wake_all(wake), name="wake-workers")
        await stop.wait()
        self._stopping = True
        self.signal_all(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        timeout = None if self.deadline is None else max(0.1, self.deadline - loop.time() - 0.5)
        _done, pending = await asyncio.wait(keepers, timeout=timeout)
        if pending:
            log.error(
                "stop grace spent: killing the workers still busy; their mail goes back to the spool",
                extra={"workers": ",".join(sorted(t.get_name() for t in pending))},
            )
            self.signal_all(signal.SIGKILL)
            await asyncio.wait(keepers, timeout=10)
        waker.cancel()

    def signal_all(self, signum: int) -> None:
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signum)

    async def _keep(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        delay = RESTART_FIRST
        while not self._stopping:
            argv = [
                sys.executable,
                "-m",
                "mailgate.workers",
                "--config",
                str(self.config.path),
                "--index",
                str(index),
                "--count",
                str(self.count),
                *(f"--plugin={name}" for name in self.plugins),
            ]
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
            self.procs[index], self.started = proc, self.started + 1
            born = loop.time()
            reader = asyncio.create_task(self._read(index, proc))
            code = await proc.wait()
            await reader
            self.procs.pop(index, None)
            self._database(index, "up", "")  # a new process says again if the database is still away
            returned = self.spool.recover_worker(worker_name(index))
            if self._stopping and code == 0:
                return
            log.error(
                "worker process ended; its claimed mail is back in the spool",
                extra={"worker": worker_name(index), "exit": code, "returned": returned},
            )
            if self._stopping:
                return
            delay = RESTART_FIRST if loop.time() - born > LIVED_LONG else delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)

    async def _read(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            self.heard(index, line)

    def heard(self, index: int, line: bytes) -> None:
        """A line from worker ``index`` (see the module's docstring); anything else is logged, not obeyed."""
        try:
            message = json.loads(line)
            if "committed" in message:
                mails = [Committed(str(a), str(b), bool(c), str(d), bool(e)) for a, b, c, d, e in message["committed"]]
                self.on_committed(mails)
            elif "database" in message:
                self._database(index, str(message["database"]), str(message.get("reason", "")))
            else:
                raise ValueError("no known key")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("a worker wrote what it should not", extra={"worker": worker_name(index), "error": str(exc)})

    def _database(self, index: int, state: str, reason: str) -> None:
        if self.status is None:
            return
        if state == "down":
            self.down[index] = reason
            self.status.down(reason)
        elif self.down.pop(index, None) is not None and not self.down:
            self.status.back()

    async def _wake_all(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            for proc in list(self.procs.values()):
                if proc.stdin is not None and not proc.stdin.is_closing():
                    with contextlib.suppress(OSError, RuntimeError):
                        proc.stdin.write(b".")
