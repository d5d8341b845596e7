"""``mailgate search QUERY [--status S] [--queue Q] [--customer ADDR|@domain] [--since …] [--until …]``."""

from __future__ import annotations

import argparse
import sys

from mailgate.cli.common import print_json, print_table, runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="full-text search over subjects and message text")
    p.add_argument("query", nargs="+", help="words a message must all contain; word* matches a prefix")
    p.add_argument("--status", choices=("new", "open", "pending", "resolved", "closed"))
    p.add_argument("--queue")
    p.add_argument("--customer", help="an address, or @domain for a whole company")
    p.add_argument("--since", help="tickets opened since: a duration back from now (30d) or a date")
    p.add_argument("--until", help="tickets opened before: a duration back from now or a date")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    from mailgate.cli.report import parse_since
    from mailgate.reports.search import Filters, search

    rt = runtime(args)
    now = rt.services.clock.now()
    try:
        since = parse_since(args.since, now) if args.since else None
        until = parse_since(args.until, now) if args.until else None
    except argparse.ArgumentTypeError as exc:
        print(f"mailgate: {exc}", file=sys.stderr)
        return 2
    filters = Filters(
        status=args.status, queue=args.queue, customer=args.customer, since=since, until=until, limit=max(1, args.limit)
    )
    with rt.sessions() as session:
        rows = search(session, " ".join(args.query), filters)
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["number", "status", "queue", "customer", "updated_at", "subject", "snippet"])
    return 0 if rows else 1
