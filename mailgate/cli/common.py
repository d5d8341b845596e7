"""Helpers shared by the command modules: config loading, logging, runtime, output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mailgate.cli.terminal import for_terminal
from mailgate.config import DEFAULT_CONFIG, EXAMPLE_CONFIG, Config, load_config


def config_path(args: argparse.Namespace) -> Path:
    """--config, else ./config.toml, else ./config.example.toml (a checkout runs as-is)."""
    if args.config:
        return Path(args.config)
    default = Path(DEFAULT_CONFIG)
    if not default.exists() and Path(EXAMPLE_CONFIG).exists():
        return Path(EXAMPLE_CONFIG)
    return default


def load(args: argparse.Namespace, *, log: bool = True) -> Config:
    config = load_config(config_path(args))
    if log:
        from mailgate.ops import logs
        from mailgate.ops.node import node_name

        logs.setup(args.log_level or config.log_level, config.log_format, node_name(config))
    return config


def runtime(args: argparse.Namespace, config: Config | None = None, *, create: bool = False) -> Any:
    """The process's runtime. Only a door (``create``: serve, imap test) makes a missing SQLite database:
    a command run as another user (root) would leave a file the service user cannot write. Only serve
    checks every template first (the others render none, or one they name)."""
    from mailgate.app import build

    config = config or load(args)
    if not create:
        missing = sqlite_file_missing(config)
        if missing is not None:
            from mailgate.errors import DatabaseSchemaError

            raise DatabaseSchemaError(
                f"no database yet at {missing}: `mailgate serve` creates it on its first start "
                "(as the service user), or run `mailgate db upgrade` as that user"
            )
    return build(config, check_templates=create)


def sqlite_file_missing(config: Config) -> Path | None:
    """The SQLite file the config names when it does not exist yet (None for PostgreSQL, or when it does)."""
    from mailgate.storage.db import sqlite_path

    path = sqlite_path(config.db_url)
    return path if path is not None and not path.exists() else None


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def echo(text: str = "") -> None:
    """Print a line that may hold mail content: control characters shown, never sent to the terminal."""
    print(for_terminal(text))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    widths = {c: min(w, 60) for c, w in widths.items()}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        print("  ".join(_cell(row.get(c))[: widths[c]].ljust(widths[c]) for c in columns).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return for_terminal(str(value).replace("\n", " "))
