"""``mailgate report [--since 30d] [--until DATE] [--queue Q] [--format table|csv|json] [--chart FILE.svg|png]``."""

from __future__ import annotations

import argparse
import csv
import sys
from datetime import UTC, datetime, timedelta

from mailgate.cli.common import print_json, print_table, runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="per-queue volume, response and resolution times, SLA, CSAT")
    p.add_argument("--since", default="30d", help="a duration back from now (30d, 12h) or a date (2026-01-01)")
    p.add_argument("--until", help="end of the window (default now): a duration back from now or a date")
    p.add_argument("--queue", help="only this queue")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--chart", metavar="FILE", help="also draw daily volume and response times (.svg or .png)")
    p.set_defaults(func=cmd_report)


def parse_since(value: str, now: datetime) -> datetime:
    """``30d``/``12h`` back from ``now``, or an ISO date/time (UTC unless it says otherwise)."""
    from mailgate.units import parse_duration

    try:
        return now - timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 30d or a date such as 2026-01-01, got {value!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_report(args: argparse.Namespace) -> int:
    from mailgate.domain.sla import sla_of
    from mailgate.reports import chart, report

    rt = runtime(args)
    now = rt.services.clock.now()
    try:
        since = parse_since(args.since, now)
        now = parse_since(args.until, now) if args.until else now
    except argparse.ArgumentTypeError as exc:
        print(f"mailgate: --since: {exc}", file=sys.stderr)
        return 2
    sla = sla_of(rt)
    with rt.sessions() as session:
        rows = report.build(session, sla, since, now, args.queue)
        days = report.daily(session, sla, since, now, args.queue) if args.chart else []
    if args.format == "json":
        print_json({"since": since.isoformat(), "until": now.isoformat(), "queues": rows})
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(report.COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(report.flat(r) for r in rows)
    else:
        print(f"from {since:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC")
        print_table([report.flat(r) for r in rows], list(report.COLUMNS))
    if args.chart:
        from pathlib import Path

        title = f"mailgate {args.queue or 'all queues'}: {since:%Y-%m-%d} to {now:%Y-%m-%d}"
        try:
            chart.write(Path(args.chart), days, title)
        except ValueError as exc:
            print(f"mailgate: {exc}", file=sys.stderr)
            return 2
    return 0
