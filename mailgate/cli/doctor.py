"""``mailgate doctor``: check a deployment and say how to fix what is wrong; exit 1 when anything is."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mailgate.cli.common import config_path, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check permissions, database, templates, rules, door, smarthost and Postfix")
    p.add_argument("--user", metavar="NAME", help="the service user the daemon runs as (default: you)")
    p.add_argument("--postfix-config", metavar="DIR", help="the Postfix instance to read (default $MAIL_CONFIG)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from mailgate.cli import doctor_checks as doctor

    try:
        user = doctor.ServiceUser.named(args.user)
    except KeyError:
        print(f"mailgate: no such user {args.user!r}", file=sys.stderr)
        return 2
    results = list(doctor.run(config_path(args), user, args.postfix_config))
    healthy = all(check.ok for check in results)
    if args.format == "json":
        print_json({"ok": healthy, "checks": [check.as_dict() for check in results]})
    else:
        for check in results:
            _print(check)
    return 0 if healthy else 1


def _print(check: Any) -> None:
    print(f"{'ok' if check.ok else 'FAIL':<5} {check.name:<18} {check.detail}")
    if not check.ok and check.fix:
        print(f"{'':<5} {'':<18} fix: {check.fix}")
