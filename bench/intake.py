"""End-to-end intake: the durable reference and ``mailgate serve``, same corpus, same load.

For the reference the clock stops at the last 250. For mailgate it stops when
the database holds every accepted message in its ticket (and so, in the same
transaction, whatever acknowledgment the outbound side queued for it): a 250
alone proves only that the mail is in the spool.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from load import LoadResult, Outgoing, run_load
from servers import Progress, Server, door, mailgate_config, mailgate_serve, reference


def _load(
    server: Server, messages: Sequence[Outgoing], clients: int, per_connection: int, max_seconds: float
) -> LoadResult:
    return asyncio.run(run_load("127.0.0.1", server.port, messages, clients, per_connection, max_seconds))


def _figures(result: LoadResult, seconds: float, cpu: float, rss: float) -> dict[str, Any]:
    accepted = max(result.accepted, 1)
    return {
        "messages": result.accepted,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(result.accepted / max(seconds, 1e-9), 1),
        "smtp_p50_ms": round(result.percentile(50), 2),
        "smtp_p99_ms": round(result.percentile(99), 2),
        "cpu_ms_per_msg": round(cpu * 1000 / accepted, 3),
        "peak_rss_mb": round(rss, 1),
        "errors": dict(result.errors),
        "timed_out": result.timed_out,
    }


def measure_reference(
    messages: Sequence[Outgoing], clients: int, per_connection: int, max_seconds: float
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-ref-"))
    return _measure_sink(reference(workdir), workdir, messages, clients, per_connection, max_seconds)


def measure_door(messages: Sequence[Outgoing], clients: int, per_connection: int, max_seconds: float) -> dict[str, Any]:
    """mailgate's SMTP door and spool without the pipeline: the clock stops at the last 250, as for the reference."""
    from servers import sqlite_url

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-door-"))
    config = mailgate_config(workdir, sqlite_url(workdir))
    return _measure_sink(door(config), workdir, messages, clients, per_connection, max_seconds)


def _measure_sink(
    server: Server, workdir: Path, messages: Sequence[Outgoing], clients: int, per_connection: int, max_seconds: float
) -> dict[str, Any]:
    server.start()
    try:
        cpu0 = server.cpu_seconds()
        result = _load(server, messages, clients, per_connection, max_seconds)
        figures = _figures(result, result.seconds, server.cpu_seconds() - cpu0, server.peak_rss_mb())
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def measure_mailgate(
    messages: Sequence[Outgoing],
    db_url: str | None,
    clients: int,
    per_connection: int,
    max_seconds: float,
    batch_size: int | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """``db_url`` None: SQLite in a fresh data directory; ``workers`` None: the default."""
    from servers import sqlite_url, worker_processes

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-mg-"))
    url = db_url or sqlite_url(workdir)
    server = mailgate_serve(mailgate_config(workdir, url, batch_size, workers)).start()
    progress = Progress(url)
    try:
        _wait_for_workers(server, worker_processes(workers))
        cpu0 = server.cpu_seconds()
        result = _load(server, messages, clients, per_connection, max_seconds)
        done_at, acks, complete = progress.wait(result.accepted, timeout=max_seconds + 60)
        seconds = done_at - result.started
        figures = _figures(result, seconds, server.cpu_seconds() - cpu0, server.peak_rss_mb())
        tickets = progress.counts()[1]
        figures.update(
            workers=worker_processes(workers),
            smtp_only_msgs_per_s=round(result.rate, 1),
            committed=complete,
            tickets=tickets,
            acks_in_outbox=acks if progress.ack_kinds else None,
            completion=(
                "every message committed, with its acknowledgment (if any) in the outbox in the same transaction"
                if progress.ack_kinds
                else "every message committed (no outbound module: no acknowledgments)"
            ),
        )
        if not complete:
            figures["errors"]["not_committed"] = result.accepted - progress.counts()[0]
    finally:
        progress.close()
        server.stop()
        log = server.log().split('msg="stopping', 1)[0]  # a task cancelled at shutdown is not a failure
        if "Traceback" in log:
            start = log.index("Traceback")
            figures["server_traceback"] = log[max(0, log.rfind("\n", 0, start - 1) - 300) : start + 3000]
            print(figures["server_traceback"], file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def _wait_for_workers(server: Server, workers: int, timeout: float = 60) -> None:
    """Until every worker process logged that it started (so the load meets the whole pipeline)."""
    deadline = time.monotonic() + timeout
    while server.log().count("worker started") < workers and time.monotonic() < deadline:
        time.sleep(0.1)


def startup(db_url: str | None, runs: int = 3) -> dict[str, Any]:
    """Seconds from exec of ``mailgate serve`` to the 220 greeting: a first start, then restarts."""
    import socket

    from servers import sqlite_url

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-start-"))
    config = mailgate_config(workdir, db_url or sqlite_url(workdir))
    times = []
    try:
        for _ in range(runs + 1):
            server = mailgate_serve(config).start()
            try:
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                    greeting = sock.recv(512)
                times.append(time.perf_counter() - server.started_at)
                assert greeting.startswith(b"220"), greeting
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "first_start_s": round(times[0], 3),
        "restart_s": round(sorted(times[1:])[len(times[1:]) // 2], 3),
        "all_s": [round(t, 3) for t in times],
    }


def big_mail(index: int, size: int) -> bytes:
    """A mail of about ``size`` bytes: a short text and one base64 attachment of random bytes."""
    import random
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = f"Big Sender {index} <big{index}@customer.example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"Logs for the crash, part {index}"
    msg["Message-ID"] = f"<big{index}.{size}@customer.example.com>"
    msg.set_content("Here are the logs you asked for.\n")
    msg.add_attachment(
        random.Random(index).randbytes(int(size * 0.74)),
        maintype="application",
        subtype="zip",
        filename=f"logs-{index}.zip",
    )
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def big_mail_memory(
    db_url: str | None, count: int, size: int, max_seconds: float, workers: int | None = None
) -> dict[str, Any]:
    """Peak RSS while ``count`` mails of ``size`` bytes arrive at once: the SMTP door alone (intake only),
    then ``mailgate serve`` at the end of the arrival and once every mail is stored."""
    from servers import sqlite_url, worker_processes

    messages = [
        Outgoing.from_raw(f"big{i}@customer.example.com", ["support@example.com"], big_mail(i, size))
        for i in range(count)
    ]
    out: dict[str, Any] = {"messages": count, "message_mb": round(len(messages[0].payload) / 1e6, 1)}
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-big-"))
    alone = door(mailgate_config(workdir / "door", sqlite_url(workdir / "door"))).start()
    try:
        result = _load(alone, messages, clients=count, per_connection=1, max_seconds=max_seconds)
        out.update(door_accepted=result.accepted, door_peak_rss_mb=round(alone.peak_rss_mb(), 1))
    finally:
        alone.stop()
    url = db_url or sqlite_url(workdir)
    server = mailgate_serve(mailgate_config(workdir, url, workers=workers)).start()
    progress = Progress(url)
    try:
        _wait_for_workers(server, worker_processes(workers))
        out["workers"] = worker_processes(workers)
        if workers is None:
            out["default_workers"] = out["workers"]
        out["rss_at_start_mb"] = round(server.peak_rss_mb(), 1)
        result = _load(server, messages, clients=count, per_connection=1, max_seconds=max_seconds)
        out["peak_rss_arrival_mb"] = round(server.peak_rss_mb(), 1)
        _, _, complete = progress.wait(result.accepted, timeout=max_seconds)
        out.update(
            accepted=result.accepted,
            stored=complete,
            peak_rss_mb=round(server.peak_rss_mb(), 1),
            smtp_p99_ms=round(result.percentile(99), 1),
            errors=dict(result.errors),
        )
        return out
    finally:
        progress.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _import_processes(summary: str, workers: int | None) -> int:
    """How many processes the import ran in, as its summary says ("…/s, 2 processes): …")."""
    import re

    from servers import worker_processes

    found = re.search(r", (\d+) process", summary)
    return int(found.group(1)) if found else max(1, worker_processes(workers))


def ingest_mbox(count: int, seed: int, db_url: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """``mailgate ingest --mbox`` of ``count`` mails into a fresh database, in ``workers`` processes:
    wall clock of the command."""
    import subprocess
    import sys

    import corpus
    from servers import ROOT, sqlite_url

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-ingest-"))
    try:
        mbox = workdir / "corpus.mbox"
        corpus.write_mbox(corpus.generate(count, seed=seed, small=True), mbox)
        config = mailgate_config(workdir, db_url or sqlite_url(workdir), workers=workers)
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailgate",
                "--config",
                str(config),
                "--log-level",
                "warning",
                "ingest",
                "--mbox",
                str(mbox),
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=3600,
        )
        seconds = time.perf_counter() - started
        summary = done.stdout.decode(errors="replace").strip().splitlines()
        return {
            "messages": count,
            "workers": _import_processes(summary[-1] if summary else "", workers),
            "seconds": round(seconds, 2),
            "msgs_per_s": round(count / seconds, 1),
            "exit": done.returncode,
            "summary": summary[-1] if summary else done.stderr.decode()[-500:],
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def pipe_door(runs: int) -> dict[str, Any]:
    """``mailgate ingest`` of one small mail against a bare ``python -c pass``, alternated in the same run.

    What an MTA pays per delivery: wall clock and CPU (user + system, from the
    children's rusage) of the whole process, medians of ``runs`` each.
    """
    import os
    import resource
    import subprocess
    import sys

    from servers import ROOT, sqlite_url

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-pipe-"))
    config = mailgate_config(workdir, sqlite_url(workdir))
    mail = workdir / "one.eml"
    mail.write_bytes(
        b"From: Alice <alice@customer.example.com>\r\nTo: support@example.com\r\n"
        b"Subject: my printer\r\nMessage-ID: <pipe@customer.example.com>\r\n\r\nIt jams.\r\n"
    )
    # as installed: pip writes the bytecode at install time, so both commands run from a warm pycache
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    commands = {
        "bare": [sys.executable, "-c", "pass"],
        "ingest": [sys.executable, "-m", "mailgate", "--config", str(config), "ingest", str(mail)],
    }
    spent: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in commands}
    try:
        for argv in commands.values():
            subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60)
        for _ in range(runs):
            for name, argv in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=60)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                assert done.returncode == 0, done.stderr
                spent[name]["wall"].append(wall)
                spent[name]["cpu"].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    out: dict[str, Any] = {"runs": runs}
    for name in commands:
        out[f"{name}_wall_ms"] = round(median(spent[name]["wall"]) * 1000, 1)
        out[f"{name}_cpu_ms"] = round(median(spent[name]["cpu"]) * 1000, 1)
    out["wall_ratio"] = round(out["ingest_wall_ms"] / out["bare_wall_ms"], 2)
    out["cpu_ratio"] = round(out["ingest_cpu_ms"] / max(out["bare_cpu_ms"], 0.1), 2)
    return out
