"""Intake of mail with attachments on PostgreSQL: ``[blobs] backend = "database"`` against ``files``.

The attachment corpus is the mixed corpus' mails that carry an attachment
(50-500 KB PDF, PNG or ZIP). Each round measures the durable reference sink,
then mailgate on PostgreSQL with the blobs in the database (the default
there, what several machines need) and with the blobs in files, each on a
fresh schema; the figures are ratios to the reference of the same round.

    .venv/bin/python bench/blobs_intake.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intake import _figures, _load, measure_reference
from load import Outgoing
from servers import Progress, mailgate_config, mailgate_serve, pg_schema


def attachment_corpus(count: int, seed: int = 3) -> list[Outgoing]:
    """``count`` mails of the mixed corpus that carry an attachment (bounded: at most 40x as many generated)."""
    import corpus

    found: list[Outgoing] = []
    for mail in corpus.generate(count * 40, seed=seed, small=False):
        if b"Content-Disposition: attachment" in mail.raw:
            found.append(Outgoing.from_raw(mail.mail_from, mail.rcpt_to, mail.raw))
            if len(found) == count:
                break
    return found


def measure(
    messages: Sequence[Outgoing], db_url: str, backend: str, clients: int, per_connection: int, max_seconds: float
) -> dict[str, Any]:
    """One mailgate daemon on ``db_url`` with ``[blobs] backend``; the clock stops when all is committed."""
    workdir = Path(tempfile.mkdtemp(prefix="mailgate-bench-blobs-"))
    config = mailgate_config(workdir, db_url)
    config.write_text(config.read_text() + f'\n[blobs]\nbackend = "{backend}"\n')
    server = mailgate_serve(config).start()
    progress = Progress(db_url)
    try:
        cpu0 = server.cpu_seconds()
        result = _load(server, messages, clients, per_connection, max_seconds)
        done_at, _acks, complete = progress.wait(result.accepted, timeout=max_seconds + 60)
        figures = _figures(result, done_at - result.started, server.cpu_seconds() - cpu0, server.peak_rss_mb())
        figures.update(committed=complete, bytes=sum(len(m.payload) for m in messages))
    finally:
        progress.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def run(size: dict[str, Any], pg_url: str | None) -> dict[str, Any]:
    """The bench row: medians over rounds, each backend as a ratio to the same round's reference."""
    if not pg_url:
        return {"note": "n/a: needs --pg"}
    count = max(20, size["mixed_count"] // 10)
    messages = attachment_corpus(count)
    load = (size["clients"], size["per_connection"], size["max_seconds"])
    rounds = []
    for _ in range(size["rounds"]):
        one = {"reference": measure_reference(messages, *load)}
        for backend in ("database", "files"):
            with pg_schema(pg_url) as url:
                one[backend] = measure(messages, url, backend, *load)
        rounds.append(one)
    out: dict[str, Any] = {
        "corpus": "attachments",
        "messages": len(messages),
        "mb": round(sum(len(m.payload) for m in messages) / 1e6, 1),
        "rounds": rounds,
    }
    for backend in ("reference", "database", "files"):
        out[backend] = {
            k: _median([r[backend][k] for r in rounds])
            for k in ("msgs_per_s", "smtp_p99_ms", "cpu_ms_per_msg", "peak_rss_mb")
        }
    for backend in ("database", "files"):
        out[f"{backend}_ratio"] = round(
            _median([r[backend]["msgs_per_s"] / r["reference"]["msgs_per_s"] for r in rounds]), 2
        )
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", required=True, metavar="URL")
    parser.add_argument("--count", type=int, default=100, help="mails with an attachment")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = {
        "mixed_count": args.count * 10,
        "clients": 8,
        "per_connection": 10,
        "max_seconds": 300,
        "rounds": args.rounds,
    }
    result = run(size, args.pg)
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
