"""Evaluate a compiled RuleSet against one mail: the actions that apply, and why.

Rules run in order (files by name, rules as written). For each action the
first matching rule that sets it wins; ``tags`` add up over every matching
rule; a matching rule with ``stop = true`` ends the walk. With
``explain=True`` every rule is evaluated in full and traced (matched or not,
which condition failed, which of its actions took effect); without it rules
that can no longer change anything are skipped, which keeps routing cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mailgate.routing.conditions import Check
from mailgate.routing.facts import MailFacts
from mailgate.routing.ruleset import Rule, RuleSet


@dataclass
class RuleTrace:
    """One rule as ``rules explain`` shows it."""

    rule: Rule
    status: str  # matched, not matched, disabled, skipped
    check: Check | None = None
    effects: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "file": self.rule.file,
            "line": self.rule.line,
            "description": self.rule.description,
            "status": self.status,
            "matched": self.status == "matched",
            "check": self.check.as_dict() if self.check is not None else None,
            "effects": self.effects,
        }


@dataclass
class Outcome:
    """What the rules decided: per action, the value and the rule that set it."""

    decided: dict[str, tuple[Any, str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)  # the rules that decided something, in order
    stopped_by: str = ""
    trace: list[RuleTrace] = field(default_factory=list)

    def value(self, action: str, default: Any = None) -> Any:
        entry = self.decided.get(action)
        return entry[0] if entry is not None else default

    def by(self, action: str) -> str:
        entry = self.decided.get(action)
        return entry[1] if entry is not None else ""


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()


def evaluate(ruleset: RuleSet, facts: MailFacts, *, explain: bool = False) -> Outcome:
    out = Outcome()
    decided = out.decided
    for rule in ruleset.rules:
        if out.stopped_by:
            if not explain:
                break
            out.trace.append(RuleTrace(rule, "skipped", effects=[f"not evaluated: rule {out.stopped_by!r} said stop"]))
            continue
        if not rule.enabled:
            if explain:
                out.trace.append(RuleTrace(rule, "disabled"))
            continue
        actions = rule.actions
        pairs = actions.pairs
        check = None
        if explain:
            check = rule.condition.explain(facts)
            if not check.matched:
                out.trace.append(RuleTrace(rule, "not matched", check))
                continue
        else:
            if not actions.tags and not actions.stop and decided.keys() >= actions.keys:
                continue  # whatever it says was decided by an earlier rule
            if not rule.condition.test(facts):
                continue
        effects: list[str] = []
        contributed = False
        for key, value in pairs:
            if key in decided:
                effects.append(
                    f"{key} = {_shown(value)} (not applied: rule {decided[key][1]!r} set "
                    f"{key} = {_shown(decided[key][0])} first)"
                )
            else:
                decided[key] = (value, rule.name)
                effects.append(f"{key} = {_shown(value)}")
                contributed = True
        new_tags = [t for t in actions.tags if t not in out.tags]
        if actions.tags:
            out.tags += new_tags
            effects.append(f"tags += {_shown(list(actions.tags))}")
            contributed = contributed or bool(new_tags)
        if actions.stop:
            out.stopped_by = rule.name
            effects.append("stop: later rules are skipped")
            contributed = True
        if contributed:
            out.rules.append(rule.name)
        if explain:
            out.trace.append(RuleTrace(rule, "matched", check, effects))
    return out
