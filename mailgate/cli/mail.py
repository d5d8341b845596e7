"""``mailgate mail parse FILE [--format json]`` and ``mailgate mail held [--format json]``.

``parse`` prints what mailgate reads from one raw mail, without a config, a
database or a daemon: the same parse the pipeline runs, so an admin can see
why a mail looks as it does (the charset decisions and the defects say why)
and anyone can check the reading from outside. ``held`` lists the automatic
mail that threaded to no ticket and so opened none (mailgate.pipeline.steps.held).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from mailgate.cli.common import echo, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mail", help="read one raw mail as mailgate does; list held automatic mail")
    msub = p.add_subparsers(dest="mail_command", metavar="ACTION")
    msub.required = True
    parse = msub.add_parser("parse", help="print what mailgate reads from a raw mail (FILE, or - for stdin)")
    parse.add_argument("file", metavar="FILE")
    parse.add_argument("--format", choices=("text", "json"), default="text")
    parse.set_defaults(func=cmd_parse)
    held = msub.add_parser("held", help="automatic mail that threaded to no ticket and opened none")
    held.add_argument("--limit", type=int, default=100)
    held.add_argument("--format", choices=("table", "json"), default="table")
    held.set_defaults(func=cmd_held)


def reading(raw: bytes) -> dict[str, Any]:
    """The JSON shape of ``mail parse`` (documented in README.md)."""
    from mailgate.domain.quotes import split_reply
    from mailgate.mail.parse import parse

    mail = parse(raw)
    return {
        "from": mail.from_addr,
        "from_name": mail.from_name,
        "to": mail.to,
        "cc": mail.cc,
        "reply_to": mail.reply_to,
        "subject": mail.subject,
        "date": mail.date.isoformat() if mail.date else None,
        "message_id": mail.message_id,
        "in_reply_to": mail.in_reply_to,
        "references": mail.references,
        "new_text": split_reply(mail.text or "").new_text,
        "text": mail.text,
        "html": mail.html or None,
        "attachments": [
            {
                "name": a.filename,
                "type": a.content_type,
                "size": len(a.payload),
                "sha256": hashlib.sha256(a.payload).hexdigest(),
                "inline": a.inline,
                "part_of": a.part_of or None,
            }
            for a in mail.attachments
        ],
        "classification": {"kind": mail.kind, "automatic": mail.automatic, "reason": mail.kind_reason},
        "encrypted": mail.encrypted,
        "charsets": mail.charsets,
        "defects": mail.defects,
    }


def cmd_parse(args: argparse.Namespace) -> int:
    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        print(f"mailgate: {args.file}: cannot read: {exc.strerror}", file=sys.stderr)
        return 66  # EX_NOINPUT
    data = reading(raw)
    if args.format == "json":
        print_json(data)
        return 0
    name = f"{data['from_name']} <{data['from']}>" if data["from_name"] else data["from"]
    echo(f"From: {name}")
    for key in ("to", "cc"):
        if data[key]:
            echo(f"{key.capitalize()}: {', '.join(data[key])}")
    echo(f"Subject: {data['subject']}\nDate: {data['date'] or '-'}\nMessage-ID: {data['message_id'] or '-'}")
    kind = data["classification"]
    echo(f"Kind: {kind['kind']}" + (f" ({kind['reason']})" if kind["reason"] else ""))
    for decision in data["charsets"]:
        echo(
            f"[charset] part {decision['part']} {decision['type']}: declared {decision['declared'] or '-'}, "
            f"read as {decision['used']} ({decision['how']})"
        )
    for att in data["attachments"]:
        owner = f", in {att['part_of']}" if att["part_of"] else ""
        echo(f"[attachment] {att['name']} ({att['type']}, {att['size']} bytes{owner})")
    for defect in data["defects"]:
        echo(f"[defect] {defect}")
    echo("")
    echo(data["text"].rstrip())
    return 0


def cmd_held(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from mailgate.cli.common import runtime
    from mailgate.pipeline.steps.held import HELD_EVENT
    from mailgate.storage.models import Event

    rt = runtime(args)
    with rt.sessions() as session:
        events = session.scalars(
            select(Event).where(Event.kind == HELD_EVENT).order_by(Event.id.desc()).limit(max(1, args.limit))
        ).all()
        rows = [{"at": e.created_at.isoformat(), "from": e.actor, **(e.detail or {})} for e in events]
    if args.format == "json":
        print_json(rows)
    else:
        print_table(rows, ["at", "mail_kind", "from", "subject", "reason", "raw_sha256"])
    return 0
