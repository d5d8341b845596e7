"""Compile the ``match`` table of a rule (TOML data) into a tree of conditions.

Every mistake raises :class:`~mailgate.routing.conditions.MatchError` with the path
of the offending key (``match.any[1].subject.regex``) and a needle, the text
to look for in the file to report its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailgate.routing.conditions import (
    All,
    Any_,
    Condition,
    FlagCondition,
    MatchError,
    Not,
    NumberCondition,
    Present,
    TextCondition,
    text_class,
)
from mailgate.routing.facts import BOOL_FIELDS, NUMBER_FIELDS, TEXT_FIELDS
from mailgate.units import parse_size

TEXT_OPS = ("equals", "contains", "glob", "regex", "present")
NUMBER_OPS = ("equals", "gt", "ge", "lt", "le")
COMBINATORS = ("all", "any", "not")
FIELDS = (*TEXT_FIELDS, *NUMBER_FIELDS, *BOOL_FIELDS, "header")


def compile_match(table: Any, where: str = "match") -> Condition:
    """Compile one match table (its keys combined with ``all``); raises MatchError."""
    if not isinstance(table, Mapping):
        raise MatchError(f"{where}: expected a table, got {_type(table)}", where.rsplit(".", 1)[-1])
    children: list[Condition] = []
    for key, value in table.items():
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise MatchError(f"{where}.{key}: expected a non-empty list of match tables", key)
            parts = tuple(compile_match(item, f"{where}.{key}[{i}]") for i, item in enumerate(value))
            children.append(All(parts) if key == "all" else Any_(parts))
        elif key == "not":
            children.append(Not(compile_match(value, f"{where}.not")))
        elif key == "header":
            if not isinstance(value, Mapping) or not value:
                raise MatchError(
                    f"{where}.header: expected a table of header names, such as "
                    '{ "X-Priority" = { equals = "1" } }',
                    "header",
                )
            for name, spec in value.items():
                label = f"header {name}"
                children.append(_text(f"header:{name.strip().lower()}", label, spec, f"{where}.header.{name}", name))
        elif key in TEXT_FIELDS:
            children.append(_text(key, key, value, f"{where}.{key}", key))
        elif key in NUMBER_FIELDS:
            children.append(_number(key, value, f"{where}.{key}"))
        elif key in BOOL_FIELDS:
            if not isinstance(value, bool):
                raise MatchError(f"{where}.{key}: expected true or false, got {_type(value)}", key)
            children.append(FlagCondition(key, value))
        else:
            raise MatchError(
                f"{where}: unknown match field {key!r} (known: {', '.join(FIELDS)}, {', '.join(COMBINATORS)})", key
            )
    return children[0] if len(children) == 1 else All(tuple(children))


def _text(key: str, label: str, spec: Any, where: str, needle: str) -> TextCondition:
    if isinstance(spec, str | list):
        spec = {"equals": spec}
    if not isinstance(spec, Mapping):
        raise MatchError(
            f"{where}: expected a string, a list of strings or an operator table "
            f'such as {{ contains = "…" }}, got {_type(spec)}',
            needle,
        )
    spec = dict(spec)
    case_sensitive = spec.pop("case_sensitive", False)
    if not isinstance(case_sensitive, bool):
        raise MatchError(f"{where}.case_sensitive: expected true or false", "case_sensitive")
    ops = list(spec)
    unknown = [op for op in ops if op not in TEXT_OPS]
    if unknown:
        raise MatchError(f"{where}: unknown operator {unknown[0]!r} (known: {', '.join(TEXT_OPS)})", unknown[0])
    if len(ops) != 1:
        raise MatchError(
            f"{where}: expected exactly one operator ({', '.join(TEXT_OPS)}), got "
            f"{len(ops)}; combine several with all/any",
            needle,
        )
    op, value = ops[0], spec[ops[0]]
    if op == "present":
        if not isinstance(value, bool):
            raise MatchError(f"{where}.present: expected true or false, got {_type(value)}", "present")
        return Present(key, label, value)
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, list | tuple) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise MatchError(f"{where}.{op}: expected a string or a non-empty list of strings, got {_type(value)}", op)
    try:
        return text_class(op)(key, label, tuple(patterns), case_sensitive)
    except MatchError as exc:
        raise MatchError(f"{where}.{op}: {exc}", exc.needle) from None


def _number(key: str, spec: Any, where: str) -> NumberCondition:
    if not isinstance(spec, Mapping):
        spec = {"equals": spec}
    if len(spec) != 1 or next(iter(spec)) not in NUMBER_OPS:
        raise MatchError(f"{where}: expected one operator of {', '.join(NUMBER_OPS)}, such as {{ gt = 5 }}", key)
    op, value = next(iter(spec.items()))
    try:
        if key == "size":
            number = float(parse_size(value))
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {_type(value)}")
        else:
            number = float(value)
    except ValueError as exc:
        raise MatchError(f"{where}.{op}: {exc}", op) from None
    return NumberCondition(key, op, number)


def _type(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__) + (
        f" ({value!r})" if isinstance(value, bool | int | float | str) else ""
    )
