"""``mailgate rules check`` and ``mailgate rules explain MAIL.eml``.

``check`` validates every rule file against the config (queues, agents) and
prints each problem as ``file:line: what is wrong``; exit 1 on any problem.
``explain`` shows, for one mail, every rule in order (matched or not, and
which condition failed), then the decision the pipeline would take for it as
a new ticket. It reads the sender lists from the database when there is one,
and stores nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

from mailgate.cli import EX_FAIL, EX_OK
from mailgate.cli.common import echo, load, print_json

EX_NOINPUT = 66


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="check routing rule files; explain how a mail is routed")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION")
    rsub.required = True
    check = rsub.add_parser("check", help="validate every rules/*.toml; exit 1 on any problem")
    check.set_defaults(func=cmd_check)
    explain = rsub.add_parser("explain", help="show which rules match a mail and the decision, storing nothing")
    explain.add_argument("mail", metavar="MAIL.eml", help="the mail (- for stdin)")
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.add_argument("--mail-from", default="", metavar="ADDR", help="SMTP envelope sender to assume")
    explain.add_argument(
        "--rcpt",
        action="append",
        default=[],
        metavar="ADDR",
        help="SMTP envelope recipient to assume (repeatable); Delivered-To headers count too",
    )
    explain.set_defaults(func=cmd_explain)


def _load_rules(args: argparse.Namespace) -> tuple[Any, Any, Any, list[Any]]:
    from mailgate.routing.plugin import parse_rules_settings
    from mailgate.routing.ruleset import check_directory, vocabulary
    from mailgate.routing.spam import parse_settings

    config = load(args, log=False)
    settings = parse_rules_settings(config)
    spam_settings = parse_settings(config)
    ruleset, problems = check_directory(settings.directory, vocabulary(config, spam_settings.queue))
    return config, spam_settings, ruleset, problems


def cmd_check(args: argparse.Namespace) -> int:
    from mailgate.routing.plugin import parse_rules_settings

    config, _, ruleset, problems = _load_rules(args)
    for problem in problems:
        print(problem)
    directory = parse_rules_settings(config).directory
    if problems:
        print(f"{len(problems)} problem(s) in the rule files of {directory}", file=sys.stderr)
        return EX_FAIL
    print(f"ok: {len(ruleset.rules)} rules in {len(ruleset.files)} files ({directory})")
    return EX_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from mailgate.context import Envelope
    from mailgate.mail.parse import parse
    from mailgate.pipeline.steps.route import decide_for
    from mailgate.routing.facts import MailFacts

    try:
        raw = sys.stdin.buffer.read() if args.mail == "-" else Path(args.mail).read_bytes()
    except OSError as exc:
        print(f"mailgate: cannot read {args.mail}: {exc.strerror}", file=sys.stderr)
        return EX_NOINPUT
    config, spam_settings, ruleset, problems = _load_rules(args)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("mailgate: fix the rule files first (mailgate rules check)", file=sys.stderr)
        return EX_FAIL
    mail = parse(raw)
    facts = MailFacts(mail, Envelope(mail_from=args.mail_from, rcpt_tos=list(args.rcpt), source="explain"))
    with _ReadOnlySession(config) as session:
        routing = decide_for(session, facts, ruleset, spam_settings, config.support.default_queue, explain=True)
    traces = routing.outcome.trace
    if args.format == "json":
        print_json(
            {
                "mail": {
                    "subject": mail.subject,
                    "from": facts.text("from")[0] if facts.text("from") else "",
                    "message_id": mail.message_id,
                    "size": mail.size,
                },
                "rules": [t.as_dict() for t in traces],
                "spam": {
                    "spam": routing.decision.spam,
                    "source": routing.spam_source,
                    "reason": routing.spam_reason,
                    "routed_queue": routing.routed_queue,
                },
                "decision": routing.as_dict(),
            }
        )
        return EX_OK
    _print_text(mail, facts, ruleset, routing)
    return EX_OK


def _print_text(mail: Any, facts: Any, ruleset: Any, routing: Any) -> None:
    sender = facts.text("from")[0] if facts.text("from") else "(no sender)"
    echo(f"Mail: {mail.subject!r} from {sender} ({mail.size} bytes)")
    echo(f"Rules: {len(ruleset.rules)} in {len(ruleset.files)} files")
    for trace in routing.outcome.trace:
        rule = trace.rule
        echo(f"  [{trace.status}] {rule.name}  ({Path(rule.file).name}:{rule.line})")
        if trace.check is not None:
            _print_check(trace.check, "      ")
        for effect in trace.effects:
            echo(f"      -> {effect}")
    if not ruleset.rules:
        echo("  (no rules: everything goes to the default queue)")
    d = routing.decision
    spam_line = ("yes" if d.spam else "no") + (f" ({routing.spam_reason})" if routing.spam_reason else "")
    echo("Decision:")
    for label, value in (
        ("queue", d.queue + (f" (rules chose {routing.routed_queue})" if d.spam else "")),
        ("priority", d.priority),
        ("tags", ", ".join(d.tags) or "-"),
        ("assignee", d.assignee or "-"),
        ("spam", spam_line),
        ("auto_reply", "yes" if d.auto_reply else "no"),
        ("template", d.template or "(default)"),
        ("drop", "yes: nothing would be stored" if d.drop else "no"),
        ("rules", ", ".join(d.rules) or "-"),
    ):
        echo(f"  {label + ':':<11} {value}")


def _print_check(check: Any, indent: str) -> None:
    echo(f"{indent}{'✓' if check.matched else '✗'} {check.text}")
    for child in check.children:
        _print_check(child, indent + "  ")


class _ReadOnlySession:
    """A session for reading the sender lists, or None when there is no database (yet)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.engine: Engine | None = None
        self.session: Session | None = None

    def __enter__(self) -> Any:
        from sqlalchemy import inspect

        from mailgate.storage import db

        url = self.config.db_url
        if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
            return None
        try:
            self.engine = db.make_engine(url)
            if not inspect(self.engine).has_table("sender_lists"):
                return None
            self.session = db.make_sessionmaker(self.engine)()
        except Exception as exc:  # explain still works without the lists
            print(f"mailgate: sender lists not read ({type(exc).__name__}); explaining without them", file=sys.stderr)
            return None
        return self.session

    def __exit__(self, *exc: object) -> None:
        if self.session is not None:
            self.session.rollback()
            self.session.close()
        if self.engine is not None:
            self.engine.dispose()
