"""Where in a rule file a problem is: the text of the file, searched for a rule's table or a key.

tomllib keeps no positions, so the line of a semantic problem is found in
the text: the n-th ``[[rule]]`` header starts rule n, and inside it the first
line that holds the offending key (or value) is the line reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]")


@dataclass
class RuleSource:
    """The text of a rule file, to find the line of a rule or of a key inside it."""

    text: str
    lines: list[str] = field(init=False)
    starts: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.lines = self.text.splitlines()
        self.starts = [i for i, line in enumerate(self.lines) if _RULE_HEADER.match(line)]

    def rule_line(self, index: int, name: Any) -> int:
        if index < len(self.starts):
            return self.starts[index] + 1
        if isinstance(name, str) and name:
            for i, line in enumerate(self.lines):
                if name in line and "name" in line:
                    return i + 1
        return 1

    def _span(self, index: int | None, line: int) -> range:
        if index is None:
            return range(len(self.lines))
        if index < len(self.starts):
            end = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.lines)
            return range(self.starts[index], end)
        return range(max(0, line - 1), len(self.lines))

    def find(self, index: int | None, line: int, *needles: str) -> int:
        """The first line of the rule holding a needle (a key name or a value), else the rule's line."""
        span = self._span(index, line)
        for needle in needles:
            if not needle:
                continue
            key = re.compile(rf"(^|[\s{{,.\[\"']){re.escape(needle)}[\"']?\s*[=\]]")
            for i in span:
                if key.search(self.lines[i]):
                    return i + 1
            for i in span:
                if needle in self.lines[i] or needle.replace("\\", "\\\\") in self.lines[i]:
                    return i + 1
        return line

    def find_key(self, index: int | None, key: str) -> int:
        return self.find(index, 1, key)
