"""``mailgate spool list`` and ``mailgate spool replay ID|--all``."""

from __future__ import annotations

import argparse
import sys

from mailgate.cli.common import load, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spool", help="what waits in the spool and what is quarantined")
    ssub = p.add_subparsers(dest="spool_command", metavar="ACTION")
    ssub.required = True
    lst = ssub.add_parser("list", help="list waiting, in-work and quarantined entries")
    lst.add_argument("--format", choices=("table", "json"), default="table")
    lst.set_defaults(func=cmd_list)
    rep = ssub.add_parser("replay", help="put quarantined entries back for processing")
    rep.add_argument("id", nargs="?")
    rep.add_argument("--all", action="store_true", help="every quarantined entry")
    rep.set_defaults(func=cmd_replay)


def _spool(args: argparse.Namespace):
    from mailgate.spool.disk import Spool

    config = load(args, log=False)
    spool = Spool(config.spool_dir)
    spool.ensure()
    return spool


def cmd_list(args: argparse.Namespace) -> int:
    spool = _spool(args)
    rows = []
    for entry in spool.iter_all():
        meta = entry.read_meta()
        rows.append(
            {
                "id": entry.id,
                "state": entry.state,
                "source": meta.source,
                "size": entry.size,
                "attempts": meta.attempts,
                "received_at": meta.received_at,
                "mail_from": meta.mail_from,
                "last_error": meta.last_error,
            }
        )
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["id", "state", "source", "size", "attempts", "received_at", "last_error"])
        depth = spool.depth()
        print(f"{depth['incoming']} waiting, {depth['work']} in work, {depth['quarantine']} quarantined")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    spool = _spool(args)
    if args.all == bool(args.id):
        print("mailgate: give one spool ID or --all", file=sys.stderr)
        return 2
    entries = spool.entries("quarantine")
    if args.id:
        entries = [e for e in entries if e.id == args.id]
        if not entries:
            print(f"mailgate: no quarantined entry {args.id}", file=sys.stderr)
            return 1
    for entry in entries:
        spool.replay(entry)
        print(f"replayed {entry.id}")
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} back in the spool; a running daemon picks them up")
    return 0
