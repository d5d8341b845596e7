"""mailgate's benchmark: every figure against a reference measured in the same run.

These machines are shared and noisy, so no figure here is judged alone: the
intake is a ratio to a bare durable SMTP sink (``reference_server.py``) run on
the same corpus, the same load and the same minute, several rounds in
alternation; lookups on a big database are a ratio to a small one.

    python bench/run.py                       # the full run (about ten minutes)
    python bench/run.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/run.py --quick               # a small run that proves the harness works

Writes ``bench/results/<date>.json`` (``--quick``: a file in the temp
directory unless ``--out`` says otherwise) and prints a markdown table.
Targets are printed beside the figures; none is asserted: the exit status
says only whether every measurement ran (and every accepted mail was stored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

FULL = {
    "clients": 16,
    "per_connection": 50,
    "small_count": 3000,
    "mixed_count": 1000,
    "rounds": 3,
    "ingest_count": 10_000,
    "lookup_small": 10_000,
    "lookup_big": 1_000_000,
    "lookup_count": 2000,
    "big_count": 10,
    "big_size": 20_000_000,
    "startup_runs": 5,
    "rules": 500,
    "steps_count": 500,
    "max_seconds": 300,
    "pipe_runs": 21,
    "workers_variants": True,
}
QUICK = {
    "clients": 16,
    "per_connection": 20,
    "small_count": 200,
    "mixed_count": 60,
    "rounds": 1,
    "ingest_count": 300,
    "lookup_small": 1_000,
    "lookup_big": 10_000,
    "lookup_count": 200,
    "big_count": 10,
    "big_size": 2_000_000,
    "startup_runs": 1,
    "rules": 500,
    "steps_count": 100,
    "max_seconds": 120,
    "pipe_runs": 3,
    "workers_variants": False,
}


# The "…_workers" variants: the pipeline in the daemon's own process, an import in one (``[spool] workers = 0``),
# against the default ("auto": one worker process per core but the door's; an import, one process per core).
WORKERS = 0


def machine() -> dict[str, Any]:
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "free_h": run("free", "-h"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg()[0],
        "commit": run("git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"),
    }


def _median(values: list[float]) -> float:
    ordered = sorted(v for v in values if v == v)
    return ordered[len(ordered) // 2] if ordered else float("nan")


def intake(corpus_name: str, size: dict[str, Any], pg_url: str | None) -> dict[str, Any]:
    """Rounds of reference / mailgate SQLite / mailgate PostgreSQL on one corpus; medians and ratios."""
    from contextlib import ExitStack

    from intake import measure_door, measure_mailgate, measure_reference
    from load import prepare
    from servers import pg_schema, worker_processes

    count = size["small_count"] if corpus_name == "small" else size["mixed_count"]
    messages = prepare(count, seed=1, small=corpus_name == "small")
    load = (size["clients"], size["per_connection"], size["max_seconds"])
    rounds: list[dict[str, Any]] = []
    for _ in range(size["rounds"]):
        one = {
            "reference": measure_reference(messages, *load),
            "door": measure_door(messages, *load),
            "sqlite": measure_mailgate(messages, None, *load),
        }
        if size["workers_variants"]:
            one["sqlite_workers"] = measure_mailgate(messages, None, *load, workers=WORKERS)
        if pg_url:
            with ExitStack() as stack:
                one["postgresql"] = measure_mailgate(messages, stack.enter_context(pg_schema(pg_url)), *load)
        if pg_url and size["workers_variants"]:
            with ExitStack() as stack:
                one["postgresql_workers"] = measure_mailgate(
                    messages, stack.enter_context(pg_schema(pg_url)), *load, workers=WORKERS
                )
        rounds.append(one)
    out: dict[str, Any] = {
        "corpus": corpus_name,
        "messages": count,
        "rounds": rounds,
        "workers": WORKERS,
        "default_workers": worker_processes(None),
    }
    backends = ("door", "sqlite", "sqlite_workers", "postgresql", "postgresql_workers")
    for backend in (b for b in backends if b in rounds[0]):
        out[f"{backend}_ratio"] = round(
            _median([r[backend]["msgs_per_s"] / r["reference"]["msgs_per_s"] for r in rounds]), 2
        )
        out[f"{backend}_p99_ratio"] = round(
            _median([r[backend]["smtp_p99_ms"] / r["reference"]["smtp_p99_ms"] for r in rounds]), 2
        )
    for backend in ("reference", *backends):
        if backend in rounds[0]:
            keys = ("msgs_per_s", "smtp_p50_ms", "smtp_p99_ms", "cpu_ms_per_msg", "peak_rss_mb")
            out[backend] = {k: _median([r[backend][k] for r in rounds]) for k in keys}
            out[backend]["errors"] = sum(sum(r[backend]["errors"].values()) for r in rounds)
    return out


def routing(rules: int) -> dict[str, Any]:
    try:
        from bench.rules_bench import route_benchmark
    except ImportError:
        return {"rules": rules, "us_per_message": None, "note": "n/a: no bench/rules_bench.py"}
    return {"rules": rules, "us_per_message": round(route_benchmark(n_rules=rules), 1)}


def _steps_pg(size: dict[str, Any], pg_url: str | None) -> dict[str, Any] | None:
    """The steps table on a fresh PostgreSQL schema (with --pg)."""
    import steps
    from servers import pg_schema

    if not pg_url:
        return None
    with pg_schema(pg_url) as url:
        return steps.measure(size["steps_count"], db_url=url)


def collect(size: dict[str, Any], pg_url: str | None, only: set[str]) -> tuple[dict[str, Any], list[str]]:
    import blobs_intake
    import intake as intake_mod
    import lookups
    import steps

    tasks: dict[str, Callable[[], Any]] = {
        "intake_small": lambda: intake("small", size, pg_url),
        "intake_mixed": lambda: intake("mixed", size, pg_url),
        "ingest_mbox": lambda: intake_mod.ingest_mbox(size["ingest_count"], seed=2),
        "ingest_mbox_workers": lambda: intake_mod.ingest_mbox(size["ingest_count"], seed=2, workers=WORKERS),
        "pipe_door": lambda: intake_mod.pipe_door(size["pipe_runs"]),
        "routing": lambda: routing(size["rules"]),
        "lookups": lambda: lookups.measure(
            size["lookup_small"], size["lookup_big"], size["lookup_count"], pg_url, rounds=size["rounds"]
        ),
        "big_mail_rss": lambda: intake_mod.big_mail_memory(
            None, size["big_count"], size["big_size"], size["max_seconds"]
        ),
        "big_mail_rss_workers": lambda: intake_mod.big_mail_memory(
            None, size["big_count"], size["big_size"], size["max_seconds"], workers=WORKERS
        ),
        "startup": lambda: intake_mod.startup(None, size["startup_runs"]),
        "pipeline_steps": lambda: steps.measure(size["steps_count"]),
        "pipeline_steps_pg": lambda: _steps_pg(size, pg_url),
        "intake_attachments_pg": lambda: blobs_intake.run(size, pg_url),  # [blobs] database vs files
    }
    results: dict[str, Any] = {}
    failures: list[str] = []
    for name, task in tasks.items():
        if only and name not in only:
            continue
        if name.endswith("_workers") and not size["workers_variants"] and name not in only:
            continue  # --quick keeps CI fast: the worker-process variants run in full runs or when named
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = task()
        except Exception:
            failures.append(name)
            results[name] = {"error": traceback.format_exc(limit=6)}
            print(results[name]["error"], file=sys.stderr)
        results[name + "_seconds"] = round(time.perf_counter() - started, 1)
    return results, failures


def incomplete(results: dict[str, Any]) -> list[str]:
    """Measurements whose mail was not all accepted and stored: the harness did not do its job."""
    problems = []
    for name in ("intake_small", "intake_mixed"):
        for one in results.get(name, {}).get("rounds", []):
            for backend, figures in one.items():
                if figures.get("errors") or figures.get("timed_out") or figures.get("committed") is False:
                    problems.append(f"{name}/{backend}: {figures.get('errors')} timed_out={figures.get('timed_out')}")
    big = results.get("big_mail_rss", {})
    if (
        big
        and "error" not in big
        and (not big.get("stored") or big.get("errors") or big.get("door_accepted") != big.get("messages"))
    ):
        problems.append(f"big_mail_rss: {big}")
    for name in ("ingest_mbox", "ingest_mbox_workers"):
        ingest = results.get(name, {})
        if ingest and "error" not in ingest and ingest.get("exit") != 0:
            problems.append(f"{name}: exit {ingest.get('exit')}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mailgate's benchmark (every figure against a same-run reference).")
    parser.add_argument("--quick", action="store_true", help="a small run that proves the harness works")
    parser.add_argument("--pg", metavar="URL", help="also measure on PostgreSQL (a fresh schema per measurement)")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument("--only", action="append", default=[], help="run only this measurement (repeatable)")
    parser.add_argument("--rounds", type=int, help="rounds of each intake measurement (default: 3, --quick: 1)")
    parser.add_argument(
        "--workers-variants",
        action="store_true",
        help="with --quick: measure intake with [spool] workers too (a full run always does)",
    )
    args = parser.parse_args(argv)

    from report import markdown

    size = dict(QUICK if args.quick else FULL)
    if args.rounds:
        size["rounds"] = args.rounds
    if args.workers_variants:
        size["workers_variants"] = True
    started = time.perf_counter()
    info = machine()
    results, failures = collect(size, args.pg, set(args.only))
    info["loadavg_end"] = os.getloadavg()[0]
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": info,
        "sizes": size,
        "postgresql": bool(args.pg),
        "results": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    problems = incomplete(results)
    document["failures"] = failures + problems
    out = args.out
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        out = (
            Path(tempfile.gettempdir()) / f"mailgate-bench-quick-{stamp}.json"
            if args.quick
            else BENCH / "results" / f"{stamp}.json"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(markdown(document))
    print(f"\nresults written to {out} ({document['seconds']} s)")
    if document["failures"]:
        print("FAILED: " + "; ".join(document["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
