"""The markdown table of a benchmark run, from its JSON: ``python bench/report.py bench/results/<date>.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NA = "n/a"


def _default_workers(figures: dict[str, Any]) -> str:
    """Which default a row measured: ``[spool] workers = "auto"`` and the processes it started here."""
    count = figures.get("default_workers")
    return "" if count is None else f' (`[spool] workers = "auto"`: {count})'


def _processes(figures: dict[str, Any], default: bool = False) -> str:
    count = figures.get("workers")
    if count is None:
        return ""
    plural = "es" if count != 1 else ""
    return f' (`[spool] workers = "auto"`: {count} process{plural})' if default else f" in {count} process{plural}"


def _num(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None or value != value:
        return NA
    return f"{value:,.{digits}f}{unit}"


def _met(ok: bool | None) -> str:
    return NA if ok is None else ("**met**" if ok else "**missed**")


def _intake_rows(name: str, label: str, target: float, r: dict[str, Any]) -> list[list[str]]:
    if not r or "error" in r:
        return [[f"{label}: msgs/s end to end", NA, NA, NA, f">= {target}x reference", "error"]]
    ref, lite, pg = r.get("reference", {}), r.get("sqlite", {}), r.get("postgresql")

    def cell(figures: dict[str, Any] | None, key: str, ratio_key: str | None = None, digits: int = 0) -> str:
        if not figures:
            return NA
        text = _num(figures.get(key), digits)
        if ratio_key and r.get(ratio_key) is not None:
            text += f" ({r[ratio_key]:.2f}x)"
        return text

    ratios = [r.get("sqlite_ratio")] + ([r.get("postgresql_ratio")] if pg else [])
    p99 = [r.get("sqlite_p99_ratio")] + ([r.get("postgresql_p99_ratio")] if pg else [])
    rows = [
        [
            f"{label}: msgs/s end to end (ratio to reference){_default_workers(r)}",
            _num(ref.get("msgs_per_s")),
            cell(lite, "msgs_per_s", "sqlite_ratio"),
            cell(pg, "msgs_per_s", "postgresql_ratio"),
            f">= {target}x",
            _met(all(x is not None and x >= target for x in ratios)),
        ],
        [
            f"{label}: SMTP latency p50 ms",
            _num(ref.get("smtp_p50_ms"), 1),
            cell(lite, "smtp_p50_ms", None, 1),
            cell(pg, "smtp_p50_ms", None, 1),
            "",
            "",
        ],
    ]
    if name == "intake_small":
        rows.append(
            [
                f"{label}: SMTP latency p99 ms (ratio)",
                _num(ref.get("smtp_p99_ms"), 1),
                cell(lite, "smtp_p99_ms", "sqlite_p99_ratio", 1),
                cell(pg, "smtp_p99_ms", "postgresql_p99_ratio", 1),
                "<= 2x",
                _met(all(x is not None and x <= 2 for x in p99)),
            ]
        )
    else:
        rows.append(
            [
                f"{label}: SMTP latency p99 ms",
                _num(ref.get("smtp_p99_ms"), 1),
                cell(lite, "smtp_p99_ms", None, 1),
                cell(pg, "smtp_p99_ms", None, 1),
                "",
                "",
            ]
        )
    for suffix in ("_workers",):
        lw, pw = r.get("sqlite" + suffix), r.get("postgresql" + suffix)
        if lw or pw:
            rows.append(
                [
                    f"{label}: with `[spool] workers = {r.get('workers')}`: msgs/s (ratio), p99 ms (ratio)",
                    "",
                    f"{cell(lw, 'msgs_per_s', 'sqlite_workers_ratio')}, "
                    f"{cell(lw, 'smtp_p99_ms', 'sqlite_workers_p99_ratio', 1)}",
                    f"{cell(pw, 'msgs_per_s', 'postgresql_workers_ratio')}, "
                    f"{cell(pw, 'smtp_p99_ms', 'postgresql_workers_p99_ratio', 1)}"
                    if pw
                    else NA,
                    "",
                    "",
                ]
            )
            rows.append(
                [
                    f"{label}: with `[spool] workers = {r.get('workers')}`: CPU ms per message, peak RSS MB",
                    "",
                    f"{cell(lw, 'cpu_ms_per_msg', None, 2)}, {cell(lw, 'peak_rss_mb')}",
                    f"{cell(pw, 'cpu_ms_per_msg', None, 2)}, {cell(pw, 'peak_rss_mb')}" if pw else NA,
                    "",
                    "",
                ]
            )
    door = r.get("door")
    if door:
        rows.append(
            [
                f"{label}: SMTP door alone, no pipeline: msgs/s (ratio), p99 ms, CPU ms/msg",
                _num(ref.get("msgs_per_s")),
                f"{_num(door.get('msgs_per_s'))} ({r.get('door_ratio', float('nan')):.2f}x), "
                f"{_num(door.get('smtp_p99_ms'), 1)}, {_num(door.get('cpu_ms_per_msg'), 2)}",
                "",
                "",
                "",
            ]
        )
    rows += [
        [
            f"{label}: CPU ms per message (server process and its workers)",
            _num(ref.get("cpu_ms_per_msg"), 2),
            cell(lite, "cpu_ms_per_msg", None, 2),
            cell(pg, "cpu_ms_per_msg", None, 2),
            "",
            "",
        ],
        [
            f"{label}: peak RSS MB (server process and its workers)",
            _num(ref.get("peak_rss_mb")),
            cell(lite, "peak_rss_mb"),
            cell(pg, "peak_rss_mb"),
            "",
            "",
        ],
    ]
    return rows


def markdown(doc: dict[str, Any]) -> str:
    res = doc["results"]
    sizes = doc["sizes"]
    rows: list[list[str]] = []
    rows += _intake_rows(
        "intake_small", f"intake, small corpus ({sizes['small_count']} mails)", 0.6, res.get("intake_small", {})
    )
    rows += _intake_rows(
        "intake_mixed", f"intake, attachment corpus ({sizes['mixed_count']} mails)", 0.5, res.get("intake_mixed", {})
    )
    ingest = res.get("ingest_mbox", {})
    rows.append(
        [
            f"`ingest --mbox` {sizes['ingest_count']:,} mails{_processes(ingest, default=True)}: msgs/s",
            "",
            _num(ingest.get("msgs_per_s"), 1),
            "",
            ">= 1000",
            _met(None if "msgs_per_s" not in ingest else ingest["msgs_per_s"] >= 1000),
        ]
    )
    ingest_w = res.get("ingest_mbox_workers", {})
    if ingest_w:
        rows.append(
            [
                f"`ingest --mbox` {sizes['ingest_count']:,} mails{_processes(ingest_w)}: msgs/s",
                "",
                _num(ingest_w.get("msgs_per_s"), 1),
                "",
                ">= 1000",
                _met(None if "msgs_per_s" not in ingest_w else ingest_w["msgs_per_s"] >= 1000),
            ]
        )
    pipe = res.get("pipe_door", {})
    rows.append(
        [
            "`ingest` of one mail (pipe door): ms wall, CPU; ratio to `python -c pass`",
            f"{_num(pipe.get('bare_wall_ms'), 1)}, {_num(pipe.get('bare_cpu_ms'), 1)}",
            f"{_num(pipe.get('ingest_wall_ms'), 1)}, {_num(pipe.get('ingest_cpu_ms'), 1)} "
            f"({_num(pipe.get('wall_ratio'), 2)}x, CPU {_num(pipe.get('cpu_ratio'), 2)}x)",
            "",
            "<= 3x",
            _met(None if "wall_ratio" not in pipe else pipe["wall_ratio"] <= 3),
        ]
    )
    route = res.get("routing", {})
    rows.append(
        [f"routing against {sizes['rules']} rules: µs per mail", "", _num(route.get("us_per_message"), 1), "", "", ""]
    )
    look = res.get("lookups", {})
    for kind, label in (("token", "by subject token"), ("references", "by References")):
        cells, oks = [], []
        for backend in ("sqlite", "postgresql"):
            row = look.get(backend)
            if not row:
                cells.append(NA)
                continue
            ratio = row[f"{kind}_ratio"]
            oks.append(ratio <= 3)
            cells.append(f"{row['small'][f'{kind}_us']:.0f} → {row['big'][f'{kind}_us']:.0f} ({ratio:.2f}x)")
        rows.append(
            [
                f"ticket lookup {label}: µs, {sizes['lookup_small']:,} → {sizes['lookup_big']:,} messages",
                "",
                cells[0],
                cells[1],
                "<= 3x",
                _met(all(oks) if oks else None),
            ]
        )
    big = res.get("big_mail_rss", {})
    mb = big.get("message_mb")
    rows.append(
        [
            f"peak RSS MB, {sizes['big_count']} mails of {mb} MB at once: SMTP door alone",
            "",
            _num(big.get("door_peak_rss_mb")),
            "",
            "< 250",
            _met(None if "door_peak_rss_mb" not in big else big["door_peak_rss_mb"] < 250),
        ]
    )
    rows.append(
        [
            f"peak RSS MB, {sizes['big_count']} mails of {mb} MB at once: `mailgate serve`{_default_workers(big)} "
            "(all processes: end of arrival / until all stored)",
            "",
            f"{_num(big.get('peak_rss_arrival_mb'))} / {_num(big.get('peak_rss_mb'))}",
            "",
            "< 250",
            _met(None if "peak_rss_mb" not in big else big["peak_rss_mb"] < 250),
        ]
    )
    bigw = res.get("big_mail_rss_workers", {})
    if bigw:
        rows.append(
            [
                f"peak RSS MB, same, `[spool] workers = {bigw.get('workers')}` (all processes: "
                "end of arrival / until all stored)",
                "",
                f"{_num(bigw.get('peak_rss_arrival_mb'))} / {_num(bigw.get('peak_rss_mb'))}",
                "",
                "< 250",
                _met(None if "peak_rss_mb" not in bigw else bigw["peak_rss_mb"] < 250),
            ]
        )
    steps, steps_pg = res.get("pipeline_steps") or {}, res.get("pipeline_steps_pg") or {}
    cpu_ms = [figures.get("cpu_us_per_message") for figures in (steps, steps_pg)]
    rows.append(
        [
            "pipeline CPU ms per mail (steps table, in process; this process's CPU)",
            "",
            _num(cpu_ms[0] / 1000 if cpu_ms[0] else None, 2),
            _num(cpu_ms[1] / 1000 if cpu_ms[1] else None, 2),
            "<= 2",
            _met(None if not any(cpu_ms) else all(c <= 2000 for c in cpu_ms if c)),
        ]
    )
    start = res.get("startup", {})
    rows.append(
        [
            "start-up to the 220 greeting, s (restart / first start)",
            "",
            f"{_num(start.get('restart_s'), 2)} / {_num(start.get('first_start_s'), 2)}",
            "",
            "< 1.5",
            _met(None if "restart_s" not in start else max(start["restart_s"], start["first_start_s"]) < 1.5),
        ]
    )
    head = ["measurement", "reference", "mailgate SQLite", "mailgate PostgreSQL", "target", ""]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if steps.get("us_per_message"):
        lines += _steps_table(steps, steps_pg)
    m = doc["machine"]
    lines += [
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, {m['platform']}; "
        f"load average {m['loadavg_start']:.1f} at start, {m.get('loadavg_end', float('nan')):.1f} at end. "
        f"{'Quick run. ' if doc['quick'] else ''}{doc['date']}, {doc['seconds']} s"
        f"{', commit ' + m['commit'] if m.get('commit') else ''}.",
    ]
    if doc.get("failures"):
        lines.append(f"\nIncomplete: {'; '.join(doc['failures'])}")
    return "\n".join(lines)


def _steps_table(steps: dict[str, Any], steps_pg: dict[str, Any]) -> list[str]:
    """µs per mail by step, SQLite and (with --pg) PostgreSQL side by side."""
    pg = steps_pg.get("us_per_message", {})
    lines = [
        "",
        f"Pipeline, in process ({steps['messages']} mails of the small corpus; wall clock, so on PostgreSQL "
        "it includes the server's answers): µs per mail by step",
        "",
        "| step | SQLite | PostgreSQL |" if pg else "| step | SQLite |",
        "|---|---|---|" if pg else "|---|---|",
    ]
    for name, value in steps["us_per_message"].items():
        lines.append(f"| {name} | {value:,} | {pg[name]:,} |" if name in pg else f"| {name} | {value:,} |")
    totals = [steps] + ([steps_pg] if pg else [])
    lines.append("| **total** | " + " | ".join(f"**{t['total_us_per_message']:,}**" for t in totals) + " |")
    lines.append("| msgs/s | " + " | ".join(f"{t['msgs_per_s']}" for t in totals) + " |")
    lines.append("| CPU of this process | " + " | ".join(f"{t.get('cpu_us_per_message', 0):,}" for t in totals) + " |")
    return lines


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))
