"""The conditions a rule's ``match`` compiles to: fields, operators, and ``all``/``any``/``not``.

A match table is compiled once per load (:mod:`mailgate.routing.matchtable`) into a tree of small condition objects;
routing a mail then only calls ``test(facts)`` on that tree. ``explain(facts)``
walks the same tree but says, for every condition, whether it held and why, so
``mailgate rules explain`` and the pipeline cannot disagree.

Text comparisons are case-insensitive (both sides casefolded once) unless a
condition says ``case_sensitive = true``. A field with several values (``to``,
``cc``, attachment names …) matches when any of its values matches; an operator
given a list of patterns matches when any pattern matches.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Protocol

from mailgate.routing.facts import MailFacts


class MatchError(ValueError):
    """A problem in a match table; ``needle`` is text to look for to find its line."""

    def __init__(self, message: str, needle: str = "") -> None:
        super().__init__(message)
        self.needle = needle


@dataclass(frozen=True)
class Check:
    """One line of an explanation: a condition, whether it held, and why."""

    matched: bool
    text: str
    children: tuple[Check, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"matched": self.matched, "condition": self.text}
        if self.children:
            data["conditions"] = [c.as_dict() for c in self.children]
        return data


class Condition(Protocol):
    def test(self, facts: MailFacts) -> bool: ...

    def explain(self, facts: MailFacts) -> Check: ...


def _show(value: str, limit: int = 60) -> str:
    value = " ".join(value.split())
    return '"' + (value if len(value) <= limit else value[: limit - 1] + "…") + '"'


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _show_all(values: tuple[str, ...], label: str) -> str:
    if not values:
        return f"no {label}"
    shown = ", ".join(_show(v) for v in values[:3])
    return f"{label} is {shown}" + (f" (+{len(values) - 3} more)" if len(values) > 3 else "")


class TextCondition:
    """``field <op> patterns`` on one of the text fields (or a header)."""

    op = ""

    def __init__(self, key: str, label: str, patterns: tuple[str, ...], case_sensitive: bool) -> None:
        self.key, self.label, self.patterns, self.case_sensitive = key, label, patterns, case_sensitive
        self.folded = patterns if case_sensitive else tuple(p.casefold() for p in patterns)

    def values(self, facts: MailFacts) -> tuple[str, ...]:
        return facts.text(self.key) if self.case_sensitive else facts.folded(self.key)

    def hit(self, values: tuple[str, ...]) -> int | None:
        """Index of the first value that matches, or None."""
        raise NotImplementedError

    def test(self, facts: MailFacts) -> bool:
        return self.hit(self.values(facts)) is not None

    def describe(self) -> str:
        shown = ", ".join(_show(p) for p in self.patterns)
        return f"{self.label} {self.op} {shown if len(self.patterns) == 1 else '[' + shown + ']'}"

    def explain(self, facts: MailFacts) -> Check:
        index = self.hit(self.values(facts))
        original = facts.text(self.key)
        if index is None:
            return Check(False, f"{self.describe()}: no ({_show_all(original, self.label)})")
        return Check(True, f"{self.describe()}: yes ({self.label} is {_show(original[index])})")


class Equals(TextCondition):
    op = "equals"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.wanted = frozenset(self.folded)

    def hit(self, values: tuple[str, ...]) -> int | None:
        for index, value in enumerate(values):
            if value in self.wanted:
                return index
        return None


class Contains(TextCondition):
    op = "contains"

    def hit(self, values: tuple[str, ...]) -> int | None:
        for index, value in enumerate(values):
            for pattern in self.folded:
                if pattern in value:
                    return index
        return None


class Glob(TextCondition):
    """Shell wildcards (``*``, ``?``, ``[abc]``) against the whole value."""

    op = "glob"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.rx = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in self.folded))

    def hit(self, values: tuple[str, ...]) -> int | None:
        for index, value in enumerate(values):
            if self.rx.match(value):
                return index
        return None


class Regex(TextCondition):
    """Python regular expressions, searched anywhere in the value."""

    op = "regex"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        flags = 0 if self.case_sensitive else re.IGNORECASE
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append(re.compile(pattern, flags))
            except re.error as exc:
                raise MatchError(f"bad regex {pattern!r}: {exc}", pattern) from None
        self.rxs = tuple(compiled)

    def values(self, facts: MailFacts) -> tuple[str, ...]:
        return facts.text(self.key)  # re.IGNORECASE does the folding

    def hit(self, values: tuple[str, ...]) -> int | None:
        for index, value in enumerate(values):
            for rx in self.rxs:
                if rx.search(value):
                    return index
        return None


class Present(TextCondition):
    op = "present"

    def __init__(self, key: str, label: str, wanted: bool) -> None:
        super().__init__(key, label, (), True)
        self.wanted = wanted

    def test(self, facts: MailFacts) -> bool:
        return bool(facts.text(self.key)) is self.wanted

    def describe(self) -> str:
        return f"{self.label} present = {str(self.wanted).lower()}"

    def explain(self, facts: MailFacts) -> Check:
        values = facts.text(self.key)
        return Check(
            self.test(facts),
            f"{self.describe()}: {'yes' if self.test(facts) else 'no'} ({_show_all(values, self.label)})",
        )


_TEXT_CLASSES: dict[str, type[TextCondition]] = {"equals": Equals, "contains": Contains, "glob": Glob, "regex": Regex}
_COMPARE = {"equals": float.__eq__, "gt": float.__gt__, "ge": float.__ge__, "lt": float.__lt__, "le": float.__le__}
_SYMBOL = {"equals": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def text_class(op: str) -> type[TextCondition]:
    return _TEXT_CLASSES[op]


class NumberCondition:
    def __init__(self, key: str, op: str, number: float) -> None:
        self.key, self.op, self.number, self.compare = key, op, number, _COMPARE[op]

    def test(self, facts: MailFacts) -> bool:
        value = facts.number(self.key)
        return value is not None and self.compare(value, self.number)

    def describe(self) -> str:
        return f"{self.key} {_SYMBOL[self.op]} {_num(self.number)}"

    def explain(self, facts: MailFacts) -> Check:
        value = facts.number(self.key)
        shown = f"no {self.key}" if value is None else f"{self.key} is {_num(value)}"
        return Check(self.test(facts), f"{self.describe()}: {'yes' if self.test(facts) else 'no'} ({shown})")


class FlagCondition:
    def __init__(self, key: str, wanted: bool) -> None:
        self.key, self.wanted = key, wanted

    def test(self, facts: MailFacts) -> bool:
        return facts.flag(self.key) is self.wanted

    def explain(self, facts: MailFacts) -> Check:
        value = facts.flag(self.key)
        return Check(
            value is self.wanted,
            f"{self.key} = {str(self.wanted).lower()}: "
            f"{'yes' if value is self.wanted else 'no'} ({self.key} is "
            f"{str(value).lower()})",
        )


class All:
    def __init__(self, children: tuple[Condition, ...]) -> None:
        self.children = children

    def test(self, facts: MailFacts) -> bool:
        for child in self.children:  # noqa: SIM110 - a plain loop: no generator per call on the hot path
            if not child.test(facts):
                return False
        return True

    def explain(self, facts: MailFacts) -> Check:
        checks = tuple(child.explain(facts) for child in self.children)
        if not checks:
            return Check(True, "always (empty match)")
        ok = all(c.matched for c in checks)
        failed = sum(not c.matched for c in checks)
        return Check(ok, f"all of {len(checks)}: " + ("yes" if ok else f"no ({failed} failed)"), checks)


class Any_:
    def __init__(self, children: tuple[Condition, ...]) -> None:
        self.children = children

    def test(self, facts: MailFacts) -> bool:
        for child in self.children:  # noqa: SIM110 - a plain loop: no generator per call on the hot path
            if child.test(facts):
                return True
        return False

    def explain(self, facts: MailFacts) -> Check:
        checks = tuple(child.explain(facts) for child in self.children)
        ok = any(c.matched for c in checks)
        return Check(ok, f"any of {len(checks)}: " + ("yes" if ok else "no (none matched)"), checks)


class Not:
    def __init__(self, child: Condition) -> None:
        self.child = child

    def test(self, facts: MailFacts) -> bool:
        return not self.child.test(facts)

    def explain(self, facts: MailFacts) -> Check:
        inner = self.child.explain(facts)
        return Check(
            not inner.matched,
            "not: " + ("yes (inner did not match)" if not inner.matched else "no (inner matched)"),
            (inner,),
        )
