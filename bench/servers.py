"""The processes a benchmark run starts, and what it reads from them.

Every server is a child process on 127.0.0.1, port 0 (the kernel picks a free
port, the server logs it), with its output in a log file. Its CPU time and
peak memory come from the kernel's accounting of that process (``/proc``),
never from a guess; it is stopped by its own PID and nothing else.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
_TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """A child process that says on one log line where it listens."""

    def __init__(self, argv: list[str], log_path: Path, ready: str, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.ready = re.compile(ready)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.started_at = 0.0

    def start(self, timeout: float = 60) -> Server:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = self.ready.search(self.log())
            if match:
                self.port = int(match.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[:4]} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.003)
        self.stop()
        raise TimeoutError(f"{self.argv[:4]} did not start in {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def processes(self) -> list[int]:
        """The server and its live children (the worker processes of ``[spool] workers``)."""
        pids = [self.pid]
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                pids += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its live children (all their threads), from /proc/<pid>/stat."""
        total = 0
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / _TICKS

    def peak_rss_mb(self) -> float:
        """VmHWM summed over the process and its live children: the most resident memory each ever had
        (an upper bound of the peak of the sum)."""
        total = 0.0
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/status") as handle:
                    total += next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024
            except (OSError, StopIteration):
                continue
        return total or float("nan")

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def reference(workdir: Path) -> Server:
    return Server(
        [sys.executable, str(BENCH / "reference_server.py"), "--dir", str(workdir / "sink")],
        workdir / "reference.log",
        r"listening [\d.]+:(\d+)",
    )


def door(config: Path) -> Server:
    return Server(
        [sys.executable, str(BENCH / "door_server.py"), "--config", str(config)],
        config.parent / "door.log",
        r"listening [\d.]+:(\d+)",
    )


def mailgate_config(workdir: Path, db_url: str, batch_size: int | None = None, workers: int | None = None) -> Path:
    """A config for a benchmark daemon: its own data directory, port 0, no smarthost; ``workers`` None:
    ``[spool] workers`` left to its default (``"auto"``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    spool = (f"batch_size = {batch_size}\n" if batch_size else "") + (
        f"workers = {workers}\n" if workers is not None else ""
    )
    text = f"""\
[mailgate]
hostname = "support.bench.example"
data_dir = "data"
database_url = "{db_url}"
log_level = "info"

[smtp]
listen = "127.0.0.1:0"
max_message_size = "25MB"

[support]
name = "Bench Support"
address = "support@example.com"
accept = ["support@example.com"]

[spool]
{spool}
[outbound]
smarthost = ""
"""
    path = workdir / "config.toml"
    path.write_text(text)
    return path


def worker_processes(workers: int | None) -> int:
    """The worker processes ``mailgate serve`` starts for ``[spool] workers`` (None: the default)."""
    from mailgate.config import auto_workers

    return auto_workers() if workers is None else workers


def mailgate_serve(config: Path) -> Server:
    return Server(
        [sys.executable, "-m", "mailgate", "--config", str(config), "serve"],
        config.parent / f"serve-{time.monotonic_ns()}.log",
        r"msg=listening addr=[\d.]+:(\d+)",
    )


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'data' / 'mailgate.sqlite3'}"


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one measurement; dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Progress:
    """What the database says is done: incoming messages committed and acknowledgments queued."""

    def __init__(self, db_url: str) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(db_url)
        self.ack_kinds = ack_kinds()

    def counts(self) -> tuple[int, int, int]:
        """Incoming messages, tickets, acknowledgment rows (held ones too: the loop guard's decision)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            messages = conn.execute(text("SELECT count(*) FROM messages WHERE direction = 'in'")).scalar_one()
            tickets = conn.execute(text("SELECT count(*) FROM tickets")).scalar_one()
            acks = 0
            if self.ack_kinds:
                names = ", ".join(f"'{k}'" for k in self.ack_kinds)
                acks = conn.execute(text(f"SELECT count(*) FROM outbox WHERE kind IN ({names})")).scalar_one()
        return int(messages), int(tickets), int(acks)

    def wait(self, messages: int, timeout: float, interval: float = 0.02) -> tuple[float, int, bool]:
        """Poll until ``messages`` are committed; returns (when it happened, acknowledgment rows, reached).

        A message's acknowledgment (when the loop guard and the rules allow
        one) is written in the message's own transaction, so it is in the
        outbox the moment the message is committed; the count is reported.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                done, _, acks = self.counts()
            except Exception:  # the schema may not exist yet in the first instants
                done, acks = 0, 0
            if done >= messages:
                return time.perf_counter(), acks, True
            if time.monotonic() > deadline:
                return time.perf_counter(), acks, False
            time.sleep(interval)

    def close(self) -> None:
        self.engine.dispose()


def ack_kinds() -> tuple[str, ...]:
    """The outbox kind of acknowledgments (empty while mailgate has no outbound module)."""
    import importlib.util

    return ("acknowledgment",) if importlib.util.find_spec("mailgate.outbound.plugin") else ()
