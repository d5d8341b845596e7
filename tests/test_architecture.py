"""The house stays readable: folders the map names, small modules, short functions, imports one way."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "mailgate"
MAP = (ROOT / "docs" / "architecture.md").read_text()


def _modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if "migrations" not in p.parts]


def test_every_folder_of_the_package_is_on_the_map():
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert folders, "the package has folders"
    missing = [f for f in folders if f"`{f}/`" not in MAP]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := p.read_text().count("\n")) > 400}
    assert not long, long


def test_no_function_is_over_60_lines_unless_the_map_says_why():
    explained = set(re.findall(r"^- `([\w.]+)`:", MAP, re.MULTILINE))
    long = []
    for path in _modules():
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60 and f"{module}.{node.name}" not in explained:
                    long.append(f"{module}.{node.name} ({length} lines)")
    assert not long, long


def test_no_module_shadows_the_standard_library():
    shadowing = [str(p.relative_to(ROOT)) for p in _modules() if p.stem in sys.stdlib_module_names]
    assert not shadowing, shadowing


def test_imports_flow_one_way():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is installed with the test extras"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
