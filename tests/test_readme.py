"""The README's promises name tests that exist: the table cannot point at a test that was renamed away."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def promised_tests() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## What it promises", 1)[1].split("\n## ", 1)[0]
    found, last = [], ""
    for file, name in re.findall(r"`(…|test_\w+\.py)(?:::(\w+))?`", table):
        file = last if file == "…" else file
        last = file
        found.append((file, name))
    return found


def test_every_promise_names_a_test_that_exists():
    promised = promised_tests()
    assert len(promised) >= 12
    for file, name in promised:
        [path] = (ROOT / "tests").rglob(file)
        source = path.read_text()
        assert not name or re.search(rf"^def {name}\(", source, re.MULTILINE), f"{file}::{name} is gone"
