"""Mail commands: ``#word args`` lines at the top of an agent's reply.

Reading: commands are the lines at the very top of the *new* text of a mail
(quoted history is never read), one per line, blank lines between them
allowed. The first line that is not a command ends them; everything below is
the answer. A line is a command when it starts with ``#`` directly followed
by a letter: ``#close``, ``#assign bob``; ``# Heading`` and ``#42`` are text.

Checking: :func:`mailgate.domain.command_plan.plan` runs every command on a *draft* of the ticket, in
order, and says for each what it did or why it failed. Nothing is written
here: when every command succeeded the caller writes the draft back and
carries out the effects (the resolved notice, a canned answer, a merge …);
when one failed, the caller changes nothing and sends nothing to the
customer. All or nothing, so a typo never half-applies a mail.

The manual of every command is ``mailgate/manual/agents.md``; ``#help`` mails it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from mailgate.config import AgentConfig

MAX_COMMANDS = 50
_COMMAND = re.compile(r"^#([A-Za-z][A-Za-z0-9_-]*)(?:[ \t]+(.*?))?[ \t]*$")


@dataclass(frozen=True)
class Command:
    word: str  # lowercased, without "#"
    args: tuple[str, ...]
    line: str  # as written, for the transcript


def parse_commands(new_text: str) -> tuple[list[Command], str]:
    """The commands at the top of ``new_text`` and the text below them."""
    lines = new_text.split("\n")
    commands: list[Command] = []
    i = 0
    while i < len(lines) and len(commands) < MAX_COMMANDS:
        stripped = lines[i].strip()
        if stripped:
            match = _COMMAND.match(stripped)
            if not match:
                break
            commands.append(Command(match.group(1).lower(), tuple((match.group(2) or "").split()), stripped))
        i += 1
    if not commands:
        return [], new_text
    return commands, "\n".join(lines[i:]).strip("\n")


@dataclass(frozen=True)
class Draft:
    """The fields of a ticket that commands change."""

    number: int
    status: str
    queue: str
    priority: str
    assignee: str | None
    tags: tuple[str, ...]
    watchers: tuple[str, ...]
    customer: str
    time_spent: int  # seconds
    spam: bool


@dataclass(frozen=True)
class TicketInfo:
    """What a merge needs to know of its target."""

    number: int
    status: str
    merged_into: int | None


@dataclass(frozen=True)
class Directory:
    """What commands are checked against: agents, queues, canned answers, other tickets."""

    agents: tuple[AgentConfig, ...]
    queues: tuple[str, ...]
    canned: frozenset[str] = frozenset()
    is_ours: Callable[[str], bool] = lambda address: False
    find_ticket: Callable[[int], TicketInfo | None] = lambda number: None
    forwarded_sender: str = ""  # for #fwd: the original sender found in the mail, "" if none

    def agent(self, name: str, me: AgentConfig) -> AgentConfig | None:
        """An agent by address, name or the part of the address before "@"; "me" is the writer."""
        key = name.strip().strip("<>").casefold()
        if key == "me":
            return me
        for test in (
            lambda a: a.address == key,
            lambda a: a.name.casefold() == key,
            lambda a: a.address.split("@")[0] == key,
        ):
            found = [a for a in self.agents if test(a)]
            if len(found) == 1:
                return found[0]
        return None


@dataclass(frozen=True)
class Result:
    line: str
    ok: bool
    text: str


@dataclass
class Plan:
    """The outcome of checking one mail's commands: results, the new draft, and the effects."""

    before: Draft
    after: Draft
    results: list[Result] = field(default_factory=list)
    note: bool = False
    resolved_notice: bool = False
    canned: list[str] = field(default_factory=list)
    merge_into: int | None = None
    spam: bool = False
    notspam: bool = False
    list_sender: bool = False  # #spam block / #notspam allow
    forward: bool = False
    help: bool = False
    files: bool = False  # #files: mail the ticket's files to the agent (mailgate.outbound.attachments)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def sends_to_customer(self) -> bool:
        return self.ok and not self.note and not self.spam


class CommandError(Exception):
    """A command that cannot be carried out; its text goes to the transcript."""
