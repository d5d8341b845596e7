"""``mailgate blobs migrate --to database|files``: move the blobs to the other backend (mailgate.storage.migrate)."""

from __future__ import annotations

import argparse
import sys

from mailgate.cli.common import load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blobs", help="the blob store (attachments and raw mails)")
    bsub = p.add_subparsers(dest="blobs_command", metavar="ACTION")
    bsub.required = True
    mig = bsub.add_parser("migrate", help="copy every blob to the other backend, resumable, then verify")
    mig.add_argument("--to", required=True, choices=("database", "files"), dest="target")
    mig.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from mailgate.storage import db
    from mailgate.storage.blobstore import open_backend
    from mailgate.storage.migrate import migrate

    config = load(args)
    engine = db.make_engine(config.db_url, busy_timeout=config.database.busy_timeout)
    db.ensure_schema(engine)
    source_name = "files" if args.target == "database" else "database"
    source, target = open_backend(source_name, config, engine), open_backend(args.target, config, engine)
    report = migrate(source, target, engine)
    print(
        f"{report.copied} blobs copied from {source_name} to {args.target}, {report.skipped} already there; "
        f"{report.verified} referenced blobs verified",
        file=sys.stderr,
    )
    for label, shas in (
        ("refused (content does not hash to its name)", report.refused),
        ("missing", report.missing),
        ("corrupt", report.corrupt),
    ):
        for sha in shas:
            print(f"mailgate: blob {sha}: {label}", file=sys.stderr)
    engine.dispose()
    if not report.ok:
        return 1
    print(f'[blobs]\nbackend = "{args.target}"')
    return 0
