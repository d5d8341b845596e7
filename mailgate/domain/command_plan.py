"""Checking mail commands: each command runs on a draft of the ticket, all or nothing.

:func:`plan` takes the commands read by :func:`mailgate.domain.commands.parse_commands`
and runs their handlers, in order, on a :class:`~mailgate.domain.commands.Draft`.
A handler either returns what it did (the transcript line) and changes the
draft and the effects of the :class:`~mailgate.domain.commands.Plan`, or raises
:class:`~mailgate.domain.commands.CommandError` saying why not, leaving the draft as
it was. Nothing here touches the database: the caller writes the plan back
only when every command succeeded. The manual of each command is
``mailgate/manual/agents.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from email.utils import parseaddr

from mailgate.config import AgentConfig
from mailgate.domain.commands import Command, CommandError, Directory, Draft, Plan, Result
from mailgate.domain.lifecycle import PRIORITIES, transition_error
from mailgate.units import parse_duration

Handler = Callable[[Plan, Command, Directory, AgentConfig], str]


def _status(target: str, done: str) -> Handler:
    def run(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
        _no_args(cmd)
        current = plan.after.status
        error = transition_error(current, target)
        if error:
            raise CommandError(error)
        plan.after = replace(plan.after, status=target)
        if target == "resolved":
            plan.resolved_notice = True
        return f"already {target}" if current == target else f"status {current} → {target}{done}"

    return run


def _no_args(cmd: Command) -> None:
    if cmd.args:
        raise CommandError(f"#{cmd.word} takes no argument")


def _one_arg(cmd: Command, what: str) -> str:
    if len(cmd.args) != 1:
        raise CommandError(f"#{cmd.word} takes one argument: {what}")
    return cmd.args[0]


def _assign(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    if not cmd.args:
        raise CommandError("#assign needs an agent (an address, a name, or me); #assign none unassigns")
    name = " ".join(cmd.args)
    if name.casefold() in ("none", "nobody"):
        plan.after = replace(plan.after, assignee=None)
        return "unassigned"
    agent = env.agent(name, me)
    if agent is None:
        known = ", ".join(a.address for a in env.agents) or "none configured"
        raise CommandError(f"unknown agent {name!r} (agents: {known})")
    plan.after = replace(plan.after, assignee=agent.address)
    return f"assigned to {_who(agent)}"


def _take(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    _no_args(cmd)
    plan.after = replace(plan.after, assignee=me.address)
    return f"assigned to {_who(me)}"


def _who(agent: AgentConfig) -> str:
    return f"{agent.name} <{agent.address}>" if agent.name else agent.address


def _queue(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    name = _one_arg(cmd, "a queue name")
    match = next((q for q in env.queues if q.casefold() == name.casefold()), None)
    if match is None:
        raise CommandError(f"unknown queue {name!r} (queues: {', '.join(env.queues)})")
    plan.after = replace(plan.after, queue=match)
    return f"queue {plan.before.queue} → {match}"


def _priority(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    value = _one_arg(cmd, "|".join(PRIORITIES)).lower()
    if value not in PRIORITIES:
        raise CommandError(f"priority must be one of {', '.join(PRIORITIES)}, not {value!r}")
    plan.after = replace(plan.after, priority=value)
    return f"priority {plan.before.priority} → {value}"


def _tag(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    if not cmd.args:
        raise CommandError("#tag needs one or more tags (-tag removes one)")
    tags = list(plan.after.tags)
    for arg in cmd.args:
        name = arg.lstrip("-").lower()
        if not name or len(name) > 50:
            raise CommandError(f"bad tag {arg!r}")
        if arg.startswith("-"):
            tags = [t for t in tags if t != name]
        elif name not in tags:
            tags.append(name)
    plan.after = replace(plan.after, tags=tuple(tags))
    return "tags: " + (", ".join(tags) or "(none)")


def _note(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    _no_args(cmd)
    plan.note = True
    return "kept as an internal note: shown to agents, not sent to the customer"


def _cc(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    if not cmd.args:
        raise CommandError("#cc needs an address (-address removes a watcher)")
    watchers = list(plan.after.watchers)
    for arg in _address_args(" ".join(cmd.args)):
        remove = arg.startswith("-")
        address = parseaddr(arg.lstrip("-"))[1].lower()
        if address.count("@") != 1 or address.startswith("@") or address.endswith("@"):
            raise CommandError(f"not a mail address: {arg!r}")
        if remove:
            watchers = [w for w in watchers if w != address]
            continue
        if env.is_ours(address):
            raise CommandError(f"{address} is one of the support addresses")
        if address != plan.after.customer and address not in watchers:
            watchers.append(address)
    plan.after = replace(plan.after, watchers=tuple(watchers))
    return "watchers: " + (", ".join(watchers) or "(none)")


def _address_args(text: str) -> list[str]:
    """Addresses separated by commas or blanks; ``Name <address>`` is one."""
    found = []
    for chunk in text.split(","):
        chunk = chunk.strip()
        if "<" in chunk:
            found.append(("-" if chunk.startswith("-") else "") + chunk.lstrip("-"))
        else:
            found += chunk.split()
    return found


def _watch(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    _no_args(cmd)
    if me.address not in plan.after.watchers:
        plan.after = replace(plan.after, watchers=(*plan.after.watchers, me.address))
    return f"{me.address} watches the ticket"


def _time(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    value = _one_arg(cmd, "a duration such as 30m or 1h30m")
    try:
        seconds = int(parse_duration(value))
    except ValueError:
        raise CommandError(f"expected a duration such as 30m or 1h30m, got {value!r}") from None
    if seconds <= 0 or seconds > 7 * 86400:
        raise CommandError(f"a time between 1s and 7d, not {value!r}")
    plan.after = replace(plan.after, time_spent=plan.after.time_spent + seconds)
    return f"+{format_seconds(seconds)}, {format_seconds(plan.after.time_spent)} in total"


def format_seconds(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    if hours:
        return f"{hours}h"
    return f"{minutes}m" if minutes else f"{seconds}s"


def _merge(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    value = _one_arg(cmd, "the number of the ticket to merge into").lstrip("#[").rstrip("]")
    if not value.isdigit():
        raise CommandError(f"expected a ticket number, got {value!r}")
    number = int(value)
    if number == plan.before.number:
        raise CommandError("a ticket cannot be merged into itself")
    target = env.find_ticket(number)
    if target is None:
        raise CommandError(f"there is no ticket #{number}")
    if target.merged_into is not None:
        raise CommandError(f"ticket #{number} was merged into #{target.merged_into}; merge into that one")
    if target.status == "closed":
        raise CommandError(f"ticket #{number} is closed")
    error = transition_error(plan.after.status, "closed")
    if error:
        raise CommandError(error)
    plan.after = replace(plan.after, status="closed")
    plan.merge_into = number
    return f"merged into #{number}; this ticket is closed and its follow-ups go to #{number}"


def _spam(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    if cmd.args not in ((), ("block",)):
        raise CommandError("#spam takes no argument, or block (to put the sender on the block list)")
    if plan.notspam:
        raise CommandError("#spam and #notspam in one mail")
    plan.spam, plan.list_sender = True, bool(cmd.args)
    plan.after = replace(plan.after, spam=True)
    blocked = f"; {plan.after.customer} is on the block list" if cmd.args else ""
    return f"marked as spam{blocked}; nothing of this mail is sent to the customer"


def _notspam(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    if cmd.args not in ((), ("allow",)):
        raise CommandError("#notspam takes no argument, or allow (to put the sender on the allow list)")
    if plan.spam:
        raise CommandError("#spam and #notspam in one mail")
    plan.notspam, plan.list_sender = True, bool(cmd.args)
    plan.after = replace(plan.after, spam=False)
    allowed = f"; {plan.after.customer} is on the allow list" if cmd.args else ""
    return f"not spam: back to the queue it had{allowed}"


def _template(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    name = _one_arg(cmd, "the name of a canned answer")
    if name not in env.canned:
        raise CommandError(f"no canned answer {name!r} (there are: {', '.join(sorted(env.canned)) or 'none'})")
    plan.canned.append(name)
    return f"canned answer {name!r} sent to the customer"


def _fwd(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    _no_args(cmd)
    if not env.forwarded_sender:
        raise CommandError("found no forwarded mail: no From: line below a forward marker, nor an attached mail")
    plan.forward = True
    return f"ticket opened on behalf of {env.forwarded_sender}"


def _files(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    _no_args(cmd)
    plan.files = True
    return "the ticket's files follow in separate mails, each under [notify] max_attachment_bytes"


def _help(plan: Plan, cmd: Command, env: Directory, me: AgentConfig) -> str:
    plan.help = True
    return "the manual follows below"


HANDLERS: dict[str, Handler] = {
    "close": _status("resolved", "; the customer gets the resolved notice"),
    "pending": _status("pending", ""),
    "open": _status("open", ""),
    "assign": _assign,
    "take": _take,
    "queue": _queue,
    "priority": _priority,
    "tag": _tag,
    "note": _note,
    "cc": _cc,
    "watch": _watch,
    "time": _time,
    "merge": _merge,
    "spam": _spam,
    "notspam": _notspam,
    "template": _template,
    "fwd": _fwd,
    "files": _files,
    "help": _help,
}


def plan(commands: list[Command], draft: Draft, env: Directory, me: AgentConfig) -> Plan:
    """Check ``commands`` in order against ``draft``; nothing outside the returned Plan changes."""
    result = Plan(before=draft, after=draft)
    for cmd in commands:
        handler = HANDLERS.get(cmd.word)
        if handler is None:
            result.results.append(Result(cmd.line, False, f"unknown command #{cmd.word} (send #help for the list)"))
            continue
        saved = result.after
        try:
            result.results.append(Result(cmd.line, True, handler(result, cmd, env, me)))
        except CommandError as exc:
            result.after = saved
            result.results.append(Result(cmd.line, False, str(exc)))
    if result.canned and (result.note or result.spam):
        result.results.append(
            Result("#template", False, "a canned answer goes to the customer; it cannot go with #note or #spam")
        )
    return result
