"""The ``mailgate`` command line. Each command group lives in its own module.

Imports are lazy: ``mailgate ingest`` runs once per mail from an MTA, so it
must not pay for the SMTP server, the scheduler or the IMAP client.

Exit codes follow sysexits: 0 ok, 1 a check found problems, 2 usage,
65 not a mail (EX_DATAERR), 75 try again later (EX_TEMPFAIL),
78 bad configuration (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EX_OK, EX_FAIL, EX_USAGE, EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 0, 1, 2, 65, 75, 78

# One module per command group; each has register(subparsers) setting a ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "mailgate.cli.setup",
    "mailgate.cli.serve",
    "mailgate.cli.ingest",
    "mailgate.cli.spool",
    "mailgate.cli.tickets",
    "mailgate.cli.rules",
    "mailgate.cli.imap",
    "mailgate.cli.report",
    "mailgate.cli.search",
    "mailgate.cli.outbox",
    "mailgate.cli.templates",
    "mailgate.cli.doctor",
    "mailgate.cli.blobs",
    "mailgate.cli.mail",
)


# Commands run once per mail by an MTA: their parser is built from their own module alone, so the
# process imports neither the other command groups nor what those import.
PIPE_COMMANDS: dict[str, str] = {"ingest": "mailgate.cli.ingest"}


def _command_of(argv: Sequence[str]) -> str:
    """The subcommand named in ``argv`` ("" when there is none before an option it cannot skip)."""
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "--log-level"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
        elif not arg.startswith(("--config=", "--log-level=")):
            return ""
    return ""


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailgate", description="An email-first helpdesk.")
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default ./config.toml, else ./config.example.toml)"
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="override [mailgate] log_level"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in modules:
        importlib.import_module(name).register(sub)
    _global_options_everywhere(parser)
    return parser


def _global_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept --config and --log-level after any subcommand too (``mailgate serve --config X``)."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for subparser in getattr(action, "choices", {}).values():
            subparser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            subparser.add_argument(
                "--log-level",
                choices=("debug", "info", "warning", "error"),
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
            _global_options_everywhere(subparser)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pipe = PIPE_COMMANDS.get(_command_of(argv))
    parser = build_parser((pipe,) if pipe else COMMAND_MODULES)
    args = parser.parse_args(argv)
    from mailgate.errors import ConfigError, DatabaseSchemaError

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"mailgate: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except DatabaseSchemaError as exc:
        print(f"mailgate: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EX_OK


if __name__ == "__main__":
    sys.exit(main())
