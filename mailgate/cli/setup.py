"""``mailgate init`` and ``mailgate db upgrade|downgrade|current``."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mailgate.cli.common import load
from mailgate.config import EXAMPLE_CONFIG


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write config.toml from config.example.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing config.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("db", help="database schema")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.required = True
    up = dbsub.add_parser("upgrade", help="upgrade the schema to this version of mailgate")
    up.add_argument("revision", nargs="?", default="heads")
    up.set_defaults(func=cmd_db_upgrade)
    down = dbsub.add_parser("downgrade", help="downgrade the schema (to base: drop everything)")
    down.add_argument("revision")
    down.set_defaults(func=cmd_db_downgrade)
    cur = dbsub.add_parser("current", help="show the schema revision")
    cur.set_defaults(func=cmd_db_current)
    from mailgate.cli import db_copy  # `db copy`: its own module (argparse only at import)

    db_copy.register(dbsub)


def _example() -> Path | None:
    """The example config: the one in the current directory, else the one the package ships."""
    shipped = Path(__file__).resolve().parents[1] / "examples" / EXAMPLE_CONFIG
    for candidate in (Path(EXAMPLE_CONFIG), shipped):
        if candidate.exists():
            return candidate
    return None


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.config or "config.toml")
    if target.exists() and not args.force:
        print(f"mailgate: {target} exists; use --force to overwrite", file=sys.stderr)
        return 1
    example = _example()
    if example is None:
        print(f"mailgate: {EXAMPLE_CONFIG} not found (the package is incomplete: reinstall it)", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(example, target)
    print(f"wrote {target}; edit [support] and [outbound], then run: mailgate --config {target} serve")
    return 0


def _engine(args: argparse.Namespace):
    from mailgate.storage import db

    config = load(args)
    return db.make_engine(config.db_url)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from mailgate.storage import db

    engine = _engine(args)
    db.upgrade(engine, args.revision)
    print(f"schema at {', '.join(sorted(db.current_heads(engine))) or 'base'}")
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    from mailgate.storage import db

    engine = _engine(args)
    db.downgrade(engine, args.revision)
    print(f"schema at {', '.join(sorted(db.current_heads(engine))) or 'base'}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from mailgate.storage import db

    engine = _engine(args)
    have, want = db.current_heads(engine), db.script_heads(engine)
    print(f"current: {', '.join(sorted(have)) or 'base'}; this mailgate: {', '.join(sorted(want))}")
    return 0 if have == want else 1
