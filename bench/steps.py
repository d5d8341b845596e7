"""Where the time goes inside the pipeline: microseconds per message, step by step.

In-process, on a fresh SQLite database, with the daemon's plugins installed
(``app.build``): the worker's batches are rebuilt here with a timer around
each step of ``pipeline.STEPS`` and around the commit, so the table names the
step to work on when the end-to-end figure falls short.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def measure(count: int, seed: int = 3, batch: int = 50, db_url: str | None = None) -> dict[str, Any]:
    """``db_url`` None: SQLite in a fresh data directory (else a database of the caller's, empty)."""
    import corpus
    from servers import mailgate_config, sqlite_url

    from mailgate.app import build
    from mailgate.config import load_config
    from mailgate.context import Envelope
    from mailgate.mail import language
    from mailgate.pipeline import run as pipeline

    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-steps-"))
    spent: dict[str, float] = defaultdict(float)

    def timed(name: str, step: Any) -> Any:
        def run(ctx: Any) -> None:
            started = time.perf_counter()
            try:
                step(ctx)
            finally:
                spent[name] += time.perf_counter() - started

        return run

    steps = tuple((name, timed(name, step)) for name, step in pipeline.STEPS)
    runtime = build(load_config(mailgate_config(workdir, db_url or sqlite_url(workdir))))
    language.load(runtime.config.cache_path)  # as a worker does before its first claim (Worker.warm_up)
    try:
        mails = [
            (m.raw, Envelope(mail_from=m.mail_from, rcpt_tos=list(m.rcpt_to), source="smtp"))
            for m in corpus.generate(count, seed=seed, small=True)
        ]
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, count, batch):
            with runtime.sessions() as session:
                with session.begin(), runtime.services.blobs.batch(session):  # as the worker: one fsync round a batch
                    for raw, envelope in mails[start : start + batch]:  # no savepoint: as the worker, none fails
                        pipeline.run(raw, envelope, session, runtime.services, steps=steps)
                    commit_started = time.perf_counter()
                spent["commit"] += time.perf_counter() - commit_started
        total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        runtime.close()
        shutil.rmtree(workdir, ignore_errors=True)
    per_message = {name: round(seconds / count * 1e6) for name, seconds in spent.items()}
    per_message["other (savepoints, flush)"] = round((total - sum(spent.values())) / count * 1e6)
    return {
        "messages": count,
        "us_per_message": per_message,
        "total_us_per_message": round(total / count * 1e6),
        # this process's CPU (the steps, the driver): on PostgreSQL the wall clock also waits for the server
        "cpu_us_per_message": round(cpu / count * 1e6),
        "msgs_per_s": round(count / total, 1),
    }
