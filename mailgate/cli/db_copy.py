"""``mailgate db copy --to URL``: this installation into an empty PostgreSQL database (mailgate.storage.db_copy)."""

from __future__ import annotations

import argparse
import sys

from mailgate.cli.common import load


def register(dbsub: argparse._SubParsersAction) -> None:
    cp = dbsub.add_parser("copy", help="copy every row and blob to an empty database, verify, print the config")
    cp.add_argument(
        "--to",
        required=True,
        metavar="URL",
        dest="target_url",
        help="e.g. postgresql+psycopg://mailgate@db.example.com/mailgate (must hold no tables)",
    )
    cp.add_argument(
        "--blobs",
        choices=("database", "files"),
        default="database",
        dest="target_backend",
        help="the target's blob backend (default database: every machine reads every blob)",
    )
    cp.set_defaults(func=cmd_db_copy)


def cmd_db_copy(args: argparse.Namespace) -> int:
    from mailgate.storage import db
    from mailgate.storage.blobstore import backend_name, open_backend
    from mailgate.storage.db_copy import TargetNotEmpty, copy_installation

    if not args.target_url.startswith("postgresql"):
        # the move this command is for: from the embedded SQLite to the shared engine (docs/operations.md)
        print(
            "mailgate: db copy moves an installation into an empty PostgreSQL database; "
            f"{args.target_url.split(':', 1)[0]!r} is not one (e.g. postgresql+psycopg://mailgate@db.example.com/mailgate)",
            file=sys.stderr,
        )
        return 2
    config = load(args)
    source = db.make_engine(config.db_url, busy_timeout=config.database.busy_timeout)
    target = db.make_engine(args.target_url)
    source_backend = backend_name(config)
    source_blobs = open_backend(source_backend, config, source)
    same = source_backend == args.target_backend == "files"  # the same directory on this machine
    target_blobs = source_blobs if same else open_backend(args.target_backend, config, target)
    try:
        report = copy_installation(source, target, source_blobs, target_blobs)
    except TargetNotEmpty as exc:
        print(f"mailgate: {exc}: {target.url.render_as_string(hide_password=True)}", file=sys.stderr)
        return 1
    finally:
        source.dispose()
        target.dispose()
    rows = sum(report.rows.values())
    print(
        f"{rows} rows in {len(report.rows)} tables copied; {report.blobs.copied} blobs copied, "
        f"{report.blobs.verified} referenced blobs verified",
        file=sys.stderr,
    )
    for name in report.mismatched:
        print(f"mailgate: table {name}: the copy differs from the source (count or checksum)", file=sys.stderr)
    for label, shas in (
        ("missing", report.blobs.missing),
        ("corrupt", report.blobs.corrupt),
        ("refused", report.blobs.refused),
    ):
        for sha in shas:
            print(f"mailgate: blob {sha}: {label} in the target", file=sys.stderr)
    if not report.ok:
        return 1
    url = args.target_url.replace('"', '\\"')
    print(
        f'# in config.toml, then restart the daemons:\n[mailgate]\ndatabase_url = "{url}"\n\n'
        f'[blobs]\nbackend = "{args.target_backend}"'
    )
    return 0
