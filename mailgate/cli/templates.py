"""``mailgate templates check``: compile and render every mail template once."""

from __future__ import annotations

import argparse

from mailgate.cli.common import load


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("templates", help="mail templates")
    tsub = p.add_subparsers(dest="templates_command", metavar="ACTION")
    tsub.required = True
    check = tsub.add_parser("check", help="report every template problem with its file and line")
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from mailgate.outbound import settings as outbound_settings
    from mailgate.outbound import templating
    from mailgate.outbound.plugin import import_kind_registrations

    config = load(args, log=False)
    import_kind_registrations()
    settings = outbound_settings.parse(config, templating.SHIPPED_DIR)
    templates = templating.Templates(settings.template_dirs)
    problems = templates.check()
    for problem in problems:
        print(problem)
    files = len(templates.files())
    print(f"{files} template(s) in {', '.join(str(d) for d in templates.directories)}: {len(problems)} problem(s)")
    return 1 if problems else 0
