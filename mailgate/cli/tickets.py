"""``mailgate tickets list|show|export|attachment``."""

from __future__ import annotations

import argparse
import sys

from mailgate.cli.common import echo, print_json, print_table, runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tickets", help="read tickets")
    tsub = p.add_subparsers(dest="tickets_command", metavar="ACTION")
    tsub.required = True
    lst = tsub.add_parser("list", help="list tickets")
    lst.add_argument("--status", choices=("new", "open", "pending", "resolved", "closed"))
    lst.add_argument("--queue")
    lst.add_argument("--limit", type=int)
    lst.add_argument("--format", choices=("table", "json"), default="table")
    lst.set_defaults(func=cmd_list)
    show = tsub.add_parser("show", help="show one ticket with its messages")
    show.add_argument("number", type=int)
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=cmd_show)
    export = tsub.add_parser("export", help="one ticket's whole conversation as an mbox, or as JSON")
    export.add_argument("number", type=int)
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--mbox", metavar="FILE", help="write every mail of the ticket to this mbox file")
    target.add_argument("--json", metavar="FILE", nargs="?", const="-", help="write JSON (default: stdout)")
    export.set_defaults(func=cmd_export)
    att = tsub.add_parser("attachment", help="write one attachment's bytes to stdout (from any daemon's database)")
    att.add_argument("number", type=int)
    att.add_argument("index", type=int, help="1 for the ticket's first attachment, in the order `show` lists them")
    att.set_defaults(func=cmd_attachment)


def cmd_list(args: argparse.Namespace) -> int:
    from mailgate.reports.views import list_tickets

    rt = runtime(args)
    with rt.sessions() as session:
        rows = list_tickets(session, args.status, args.queue, args.limit)
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["number", "status", "queue", "priority", "customer", "messages", "updated_at", "subject"])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from mailgate.reports.views import show_ticket

    rt = runtime(args)
    with rt.sessions() as session:
        data = show_ticket(session, args.number)
    if data is None:
        print(f"mailgate: no ticket #{args.number}", file=sys.stderr)
        return 1
    if args.format == "json":
        print_json(data)
        return 0
    echo(f"#{data['number']} {data['subject']}")
    echo(
        f"status: {data['status']}  queue: {data['queue']}  priority: {data['priority']}  "
        f"customer: {data['customer']}  assignee: {data['assignee'] or '-'}"
    )
    for message in data["messages"]:
        echo(f"\n--- {message['direction']} {message['date']} from {message['from']}")
        echo(f"Subject: {message['subject']}")
        for att in message["attachments"]:
            echo(
                f"[attachment] {att['filename']} ({att['content_type']}, sniffed {att['sniffed_type']}, "
                f"{att['size']} bytes, sha256 {att['sha256'][:12]}…)"
            )
        echo(message["text"].rstrip())
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mailgate.reports.export import export_json, export_mbox

    rt = runtime(args)
    with rt.sessions() as session:
        if args.mbox:
            count = export_mbox(session, rt.services.blobs, args.number, Path(args.mbox))
            data = None
        else:
            data = export_json(session, args.number)
            count = None if data is None else 1
    if count is None:
        print(f"mailgate: no ticket #{args.number}", file=sys.stderr)
        return 1
    if args.mbox:
        print(f"#{args.number}: {count} mails written to {args.mbox}", file=sys.stderr)
    elif args.json == "-":
        print_json(data)
    else:
        import json

        Path(args.json).write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    return 0


def cmd_attachment(args: argparse.Namespace) -> int:
    """Stream the blob a chunk at a time: a 25 MB attachment is never held whole."""
    from mailgate.storage.attachments import ticket_attachments

    rt = runtime(args)
    with rt.sessions() as session:
        found = ticket_attachments(session, args.number)
    if found is None:
        print(f"mailgate: no ticket #{args.number}", file=sys.stderr)
        return 1
    if not 1 <= args.index <= len(found):
        print(f"mailgate: ticket #{args.number} has {len(found)} attachments, no number {args.index}", file=sys.stderr)
        return 1
    attachment = found[args.index - 1]
    try:
        for chunk in rt.services.blobs.iter_chunks(attachment.sha256):
            sys.stdout.buffer.write(chunk)
    except FileNotFoundError:
        print(
            f"mailgate: the bytes of {attachment.filename!r} (sha256 {attachment.sha256}) are not in the "
            "blob store: see `mailgate blobs migrate`",
            file=sys.stderr,
        )
        return 1
    sys.stdout.buffer.flush()
    print(f"#{args.number} [{args.index}] {attachment.filename} ({attachment.size} bytes)", file=sys.stderr)
    return 0
