"""Rule files: read every ``rules/*.toml`` in name order, check it, compile it into a RuleSet.

The RuleSet is immutable: a reload builds a new one and swaps it in whole,
so a message is always routed by one consistent version of the rules, and a
file with any problem never replaces rules that work. Every problem names
the file and the line (tomllib gives the line of a syntax error; for the rest
the line of the offending key is found in the text of the rule). The language
itself is documented in ``rules/README.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailgate.config import Config
from mailgate.errors import ConfigError, Problem
from mailgate.routing.conditions import All, Condition, MatchError
from mailgate.routing.matchtable import compile_match
from mailgate.routing.source import RuleSource

PRIORITIES = ("low", "normal", "high", "urgent")
ACTIONS = ("queue", "priority", "tags", "assign", "spam", "auto_reply", "template", "locale", "drop", "stop")
RULE_KEYS = ("name", "description", "enabled", "match", *ACTIONS)
_TAG = re.compile(r"^[^\s,]{1,100}$")
_TEMPLATE = re.compile(r"^[\w][\w.-]{0,99}$")
_LOCALE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?$")
_TOML_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


class RuleError(ConfigError):
    """The rule files have problems; ``problems`` lists each with file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Actions:
    """What a rule sets when it matches; None means it leaves that decision to others."""

    queue: str | None = None
    priority: str | None = None
    tags: tuple[str, ...] = ()
    assign: str | None = None
    spam: bool | None = None
    auto_reply: bool | None = None
    template: str | None = None
    locale: str | None = None
    drop: bool | None = None
    stop: bool = False
    # The first-wins actions set, as (action, value) pairs, and their names: computed once for routing.
    pairs: tuple[tuple[str, Any], ...] = field(init=False, repr=False, compare=False, default=())
    keys: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        pairs = tuple((key, getattr(self, key)) for key in _FIRST_WINS if getattr(self, key) is not None)
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "keys", frozenset(key for key, _ in pairs))


_FIRST_WINS = ("queue", "priority", "assign", "spam", "auto_reply", "template", "locale", "drop")


@dataclass(frozen=True)
class Rule:
    name: str
    file: str
    line: int
    condition: Condition
    actions: Actions
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    files: tuple[str, ...] = ()
    has_drop: bool = False


EMPTY = RuleSet()


@dataclass(frozen=True)
class Vocabulary:
    """The names a rule may refer to (None: anything goes)."""

    queues: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    spam_queue: str = "spam"


def vocabulary(config: Config, spam_queue: str = "spam") -> Vocabulary:
    """Queues of ``[[queues]]`` plus the default and the spam queue; agents of ``[[agents]]``."""
    queues = {q.name for q in config.queues} | {config.support.default_queue, spam_queue}
    return Vocabulary(
        queues=frozenset(queues), agents=frozenset(a.address for a in config.agents), spam_queue=spam_queue
    )


def rule_files(directory: Path) -> list[Path]:
    """``*.toml`` in file-name order; names starting with a dot (editor files) are skipped."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob("*.toml") if not p.name.startswith(".")), key=lambda p: p.name)


def signature(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    """Cheap fingerprint of the rule files (name, inode, mtime, size): a change means reload."""
    result = []
    for path in rule_files(directory):
        try:
            st = path.stat()
        except OSError:
            continue
        result.append((path.name, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(result)


def check_directory(directory: Path, vocab: Vocabulary) -> tuple[RuleSet, list[Problem]]:
    """Compile every file; return the rule set and every problem found (all files, all rules)."""
    rules: list[Rule] = []
    problems: list[Problem] = []
    names: dict[str, str] = {}
    files = rule_files(directory)
    for path in files:
        file_rules, file_problems = compile_file(path, vocab, names)
        rules += file_rules
        problems += file_problems
    ruleset = RuleSet(
        rules=tuple(rules), files=tuple(str(p) for p in files), has_drop=any(r.actions.drop for r in rules)
    )
    return ruleset, problems


def load_directory(directory: Path, vocab: Vocabulary) -> RuleSet:
    """The compiled rules, or RuleError listing every problem."""
    ruleset, problems = check_directory(directory, vocab)
    if problems:
        raise RuleError(problems)
    return ruleset


def compile_file(path: Path, vocab: Vocabulary, names: dict[str, str]) -> tuple[list[Rule], list[Problem]]:
    shown = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem(shown, 0, f"cannot read: {exc}")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        line = int(match.group(1)) if match else 0
        detail = _TOML_LINE.sub("", message) + (f" (column {match.group(2)})" if match else "")
        return [], [Problem(shown, line, f"syntax error: {detail}")]
    source = RuleSource(text)
    problems = [
        Problem(shown, source.find_key(None, key), f"unknown top-level key {key!r}; rules are [[rule]] tables")
        for key in data
        if key != "rule"
    ]
    items = data.get("rule", [])
    if not isinstance(items, list):
        return [], [*problems, Problem(shown, source.find_key(None, "rule"), "rule: expected [[rule]] tables")]
    rules = []
    for index, item in enumerate(items):
        rule, rule_problems = _compile_rule(item, index, shown, source, vocab, names)
        problems += rule_problems
        if rule is not None and not rule_problems:
            rules.append(rule)
    return rules, problems


def _compile_rule(
    item: Any, index: int, file: str, source: RuleSource, vocab: Vocabulary, names: dict[str, str]
) -> tuple[Rule | None, list[Problem]]:
    line = source.rule_line(index, item.get("name") if isinstance(item, Mapping) else None)
    label = f"rule #{index + 1}"
    if not isinstance(item, Mapping):
        return None, [Problem(file, line, f"{label}: expected a table")]
    problems: list[Problem] = []

    def problem(message: str, *needles: str) -> None:
        problems.append(Problem(file, source.find(index, line, *needles), f"{label}: {message}"))

    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problem('needs a name = "…" (a non-empty string)', "name")
        name = ""
    else:
        label = f"rule {name!r}"
        if name in names:
            problem(f"name already used by a rule in {names[name]}", "name")
        names.setdefault(name, file)
    for key in item:
        if key not in RULE_KEYS:
            problem(f"unknown key {key!r} (known: {', '.join(RULE_KEYS)})", key)
    description = item.get("description", "")
    if not isinstance(description, str):
        problem("description: expected a string", "description")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        problem("enabled: expected true or false", "enabled")
    condition: Condition = All(())
    if "match" not in item:
        problem("needs a match table (match = {} matches every mail)")
    else:
        try:
            condition = compile_match(item["match"])
        except MatchError as exc:
            problem(str(exc), exc.needle, "match")
    actions = _actions(item, vocab, problem)
    if not problems and not any(key in item for key in ACTIONS):
        problem(f"has no action (one of {', '.join(ACTIONS)})")
    if problems:
        return None, problems
    return Rule(
        name=name,
        file=file,
        line=line,
        condition=condition,
        actions=actions,
        description=str(description),
        enabled=bool(enabled),
    ), []


def _actions(item: Mapping[str, Any], vocab: Vocabulary, problem: Any) -> Actions:
    values: dict[str, Any] = {}
    for key in ("spam", "auto_reply", "drop", "stop"):
        if key in item:
            if isinstance(item[key], bool):
                values[key] = item[key]
            else:
                problem(f"{key}: expected true or false, got {item[key]!r}", key)
    for key in ("queue", "priority", "assign", "template", "locale"):
        if key in item:
            value = item[key]
            if not isinstance(value, str) or not value.strip():
                problem(f"{key}: expected a non-empty string, got {value!r}", key)
            else:
                values[key] = value.strip().lower() if key == "assign" else value.strip()
    if "queue" in values and vocab.queues is not None and values["queue"] not in vocab.queues:
        problem(
            f"queue: unknown queue {values['queue']!r} (known: {', '.join(sorted(vocab.queues))}; "
            "declare it in [[queues]] of the config)",
            "queue",
        )
    if values.get("queue") == vocab.spam_queue:  # the spam queue is reached by a spam verdict
        if values.get("spam") is False:
            problem(f"queue: {vocab.spam_queue!r} is the spam queue, but the rule says spam = false", "queue")
        values["spam"] = True
        del values["queue"]
    if "priority" in values and values["priority"] not in PRIORITIES:
        problem(f"priority: expected one of {', '.join(PRIORITIES)}, got {values['priority']!r}", "priority")
    if "assign" in values and vocab.agents is not None and values["assign"] not in vocab.agents:
        problem(
            f"assign: unknown agent {values['assign']!r} (agents are the addresses of [[agents]] in the config)",
            "assign",
        )
    if "template" in values and not _TEMPLATE.match(values["template"]):
        problem(f'template: expected a template name such as "ack_vip", got {values["template"]!r}', "template")
    if "locale" in values and not _LOCALE.match(values["locale"]):
        problem(f'locale: expected a language such as "fr" or "pt-BR", got {values["locale"]!r}', "locale")
    if "tags" in item:
        tags = item["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
            problem(f"tags: expected a list of tags without spaces or commas, got {tags!r}", "tags")
        else:
            values["tags"] = tuple(dict.fromkeys(tags))
    return Actions(**values)
