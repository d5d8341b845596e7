"""Rule files in a running process: load at start, watch, reload atomically.

``install`` reads ``[rules]`` and ``[spam]``, compiles the rule files (any
problem stops the start with a ConfigError naming file and line) and puts a
:class:`RuleHolder` in ``services.rules``. In the daemon, ``start``
polls the files' names, inodes, mtimes and sizes every ``poll_interval``; a
change is reloaded once it has settled. A reload builds a whole new RuleSet
and swaps it in with one assignment: a good edit applies to the next message;
a bad edit is logged (file, line, what is wrong) and the previous rules stay
in force. SIGHUP reloads at once. The daemon's worker processes do not watch:
a change the daemon's watcher found reaches them as a SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailgate.config import Config, Table
from mailgate.context import MessageContext, installed
from mailgate.errors import ConfigError
from mailgate.routing.ruleset import Problem, RuleError, RuleSet, Vocabulary, check_directory, signature, vocabulary
from mailgate.routing.spam import parse_settings
from mailgate.storage import audit

if TYPE_CHECKING:
    from mailgate.app import Runtime

log = logging.getLogger("mailgate.rules")


@dataclass(frozen=True)
class RulesSettings:
    directory: Path
    poll_interval: float = 1.0


def parse_rules_settings(config: Config) -> RulesSettings:
    """``[rules] dir`` (default ``rules/`` beside the config file) and ``poll_interval``."""
    t = Table(config.raw.get("rules"), config.path, "rules")
    explicit = t.has("dir")
    directory = t.path("dir", "rules", config.base_dir)
    poll = t.duration("poll_interval", "1s")
    t.finish()
    if explicit and not directory.is_dir():
        raise t.error("dir", f"no such directory: {directory}")
    if poll <= 0:
        raise t.error("poll_interval", "must be more than 0")
    return RulesSettings(directory=directory, poll_interval=poll)


class RuleHolder:
    """The rule set in force. ``current`` is replaced whole, never changed in place."""

    def __init__(self, directory: Path, vocab: Vocabulary, poll_interval: float = 1.0) -> None:
        self.directory, self.vocab, self.poll_interval = directory, vocab, poll_interval
        self._lock = threading.Lock()
        self.signature = signature(directory)
        ruleset, problems = check_directory(directory, vocab)
        if problems:
            raise RuleError(problems)
        self.current: RuleSet = ruleset
        self.failed_signature: tuple[object, ...] | None = None

    def reload(self) -> list[Problem]:
        """Load the files now; keep the old rules (and log why) if any file has a problem."""
        with self._lock:
            before = signature(self.directory)
            try:
                ruleset, problems = check_directory(self.directory, self.vocab)
            except Exception as exc:  # a reload must never take the daemon down
                ruleset, problems = self.current, [Problem(str(self.directory), 0, f"cannot load: {exc!r}")]
            if problems:
                self.failed_signature = before
                for problem in problems:
                    log.error("rule file error; the previous rules stay in force", extra={"problem": str(problem)})
                return problems
            self.current, self.signature, self.failed_signature = ruleset, before, None
        log.info("rules loaded", extra={"rules": len(ruleset.rules), "files": len(ruleset.files)})
        return []

    def poll(self, settle: float = 0.2) -> bool:
        """Reload if the files changed (and stopped changing); True when something was tried."""
        seen = signature(self.directory)
        if seen == self.signature or seen == self.failed_signature:
            return False
        time.sleep(settle)  # an editor may still be writing
        if signature(self.directory) != seen:
            return False
        self.reload()
        return True


def record_spam_verdict(ctx: MessageContext) -> None:
    """Reactor: a new ticket judged spam gets an event saying why and where the rules had sent it."""
    if not (ctx.new_ticket and ctx.route.spam and ctx.ticket is not None):
        return
    audit.record(
        ctx.session,
        ctx.services.clock.now(),
        "ticket.spam",
        ticket=ctx.ticket,
        actor="mailgate",
        from_queue=ctx.notes.routed_queue,
        queue=ctx.ticket.queue,
        reason=ctx.notes.spam_reason,
        source=ctx.notes.spam_source,
    )


def install(runtime: Runtime) -> None:
    config: Config = runtime.config
    services = runtime.services
    settings = parse_rules_settings(config)
    spam_settings = parse_settings(config)
    try:
        holder = RuleHolder(settings.directory, vocabulary(config, spam_settings.queue), settings.poll_interval)
    except RuleError as exc:
        raise ConfigError(f"rule files in {settings.directory} have errors:\n{exc}") from None
    services.rules = holder
    services.spam = spam_settings
    services.reactors.append(record_spam_verdict)
    log.debug("rules loaded", extra={"rules": len(holder.current.rules), "dir": str(settings.directory)})


async def start(runtime: Runtime, stop: asyncio.Event) -> None:
    holder = installed(runtime.services.rules, "mailgate.routing.plugin")
    settle = min(0.2, holder.poll_interval)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=holder.poll_interval)
        if stop.is_set():
            return
        try:
            changed = await asyncio.to_thread(holder.poll, settle)
        except Exception:
            log.exception("watching the rule files failed; trying again")
            continue
        if changed and runtime.services.reload_workers is not None:
            runtime.services.reload_workers()  # the pipeline runs there: the workers read the files again


def reload(runtime: Runtime) -> None:
    """SIGHUP."""
    installed(runtime.services.rules, "mailgate.routing.plugin").reload()
