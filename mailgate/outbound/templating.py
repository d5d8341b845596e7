"""Jinja2 templates for every mail mailgate writes: one file per kind and locale.

A template file ``<kind>.j2`` may hold named blocks: ``subject`` (without it
the subject is the ticket's), ``html`` (when present the mail gets an HTML
part) and ``text``; without a ``text`` block, everything outside the other two
blocks is the text part. The file is looked up, first found wins, as::

    <dir>/queues/<queue>/<locale>/<kind>.j2
    <dir>/<locale>/<kind>.j2
    <dir>/en/<kind>.j2

in the admin's directory (``[templates] dir``, default ``templates`` next to
the config file) and then in the templates shipped with mailgate, so an admin
overrides one file without copying the others.

Templates run in Jinja's sandbox with ``StrictUndefined``: a misspelt variable
is an error, not an empty string. The ``html`` block is rendered by an
environment that autoescapes; the text and the subject by one that does not
(they are plain text, and the subject is cleaned of CR/LF before it becomes a
header). :meth:`Templates.check` compiles and renders every file once with
:func:`sample_context`, and reports each problem with its file and line. A
module that writes its own kinds of mail declares their extra context names
with :func:`register_kind`, so their templates are checked as strictly.
"""

from __future__ import annotations

import contextlib
import hashlib
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    BytecodeCache,
    DictLoader,
    FileSystemBytecodeCache,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.sandbox import SandboxedEnvironment

from mailgate.errors import ConfigError, Problem

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "templates"
SUFFIX = ".j2"
DEFAULT_LOCALE = "en"

# The kinds of mail this module's plugin writes. Each must exist at least in templates/en/.
KINDS: tuple[str, ...] = (
    "acknowledgment",  # to the customer: your ticket number, replies keep the thread
    "notify_new_ticket",  # to the queue's agents: a new ticket
    "notify_reply",  # to the assignee, else the queue's agents: the customer replied
    "agent_reply",  # to the customer: an agent's answer, relayed from the support address
    "resolved",  # to the customer: the ticket is resolved
    "loop_alert",  # to [outbound] admin_address: automatic mail paused by the circuit breaker
)

# What every template sees (documented in docs/outbound.md), with the sample values `check` renders with.
BASE_SAMPLE: dict[str, Any] = {
    "ticket": {
        "number": 42,
        "token": "[#42]",
        "subject": "Printer on fire",
        "status": "new",
        "queue": "support",
        "priority": "normal",
        "assignee": "",
        "created_at": "2026-01-05T09:00:00+00:00",
    },
    "message": {
        "from_addr": "alice@customer.example",
        "from_name": "Alice",
        "subject": "Printer on fire",
        "text": "Hello,\nmy printer is on fire.",
        "new_text": "my printer is on fire.",
        "date": "2026-01-05T09:00:00+00:00",
        "message_id": "<m1@customer.example>",
    },
    "customer": {"address": "alice@customer.example", "name": "Alice"},
    "queue": {"name": "support", "locale": "en"},
    "support": {"name": "Example Support", "address": "support@example.com"},
    "reply_address": "support@example.com",
}
_AGENT = {"agent": {"name": "Bob", "address": "bob@example.com"}}

# Names a kind adds to the base context, with sample values. A module that writes its own kinds of mail
# registers them with register_kind(), so `check` knows their names; the templates of a kind nobody
# registered are checked leniently (syntax, and the base names only).
_KIND_SAMPLES: dict[str, dict[str, Any]] = {
    "acknowledgment": {},
    "notify_new_ticket": dict(_AGENT),
    "notify_reply": dict(_AGENT),
    "agent_reply": {
        "reply": {
            "text": "Please unplug it.",
            "html": "<p>Please <b>unplug</b> it.</p>",
            "author_name": "Bob",
            "author_address": "bob@example.com",
        }
    },
    "resolved": {},
    "loop_alert": {"alert": {"count": 200, "limit": 200, "window": "10m", "since": "2026-01-05T09:00:00+00:00"}},
}


def register_kind(kind: str, sample: dict[str, Any] | None = None) -> None:
    """Declare a kind of mail and the names (with sample values) its context adds to the base."""
    _KIND_SAMPLES[kind] = dict(sample or {})


def registered(kind: str) -> str:
    """The kind a template stands for: itself, or the kind it replaces (``acknowledgment_vip``, the
    ``template`` of a rule, is an ``acknowledgment`` and is checked as strictly)."""
    if kind in _KIND_SAMPLES:
        return kind
    return max((k for k in _KIND_SAMPLES if kind.startswith(k + "_")), key=len, default=kind)


def sample_context(kind: str = "") -> dict[str, Any]:
    """The context `check` renders a template of ``kind`` with: every documented name filled."""
    return {**BASE_SAMPLE, **_KIND_SAMPLES.get(registered(kind), {})}


def known_names(kind: str) -> frozenset[str] | None:
    """The names a template of ``kind`` may use; None for a kind nobody registered."""
    kind = registered(kind)
    if kind not in _KIND_SAMPLES:
        return None
    return frozenset(BASE_SAMPLE) | frozenset(_KIND_SAMPLES[kind])


def empty_context(kind: str = "") -> dict[str, Any]:
    """The same names with empty values: what a render starts from before the caller's data."""
    return {
        name: ({key: "" for key in value} if isinstance(value, dict) else "")
        for name, value in sample_context(kind).items()
    }


def kind_of(name: str) -> str:
    """``queues/billing/fr/acknowledgment.j2`` → ``acknowledgment``."""
    return name.rsplit("/", 1)[-1].removesuffix(SUFFIX)


@dataclass(frozen=True)
class Rendered:
    subject: str  # "" when the template has no subject block
    text: str
    html: str  # "" when the template has no html block
    template: str  # the file that was used, for logs and events


class Templates:
    """The templates of one process, read once: two sandboxed environments over the same snapshot.

    The files are read when the object is built, so what runs is exactly what
    was checked, and a file edited later changes nothing until a reload builds
    (and checks) a new set.
    """

    def __init__(self, directories: Iterable[Path], cache_dir: Path | None = None) -> None:
        """``cache_dir``: compiled templates are kept there between starts (Jinja2's bytecode cache, keyed
        by each file's text), one folder per environment: the HTML one escapes and the text one does not."""
        self.directories = [d for d in directories if d.is_dir()]
        self.sources: list[tuple[Path, str, str | None]] = []  # (path, name, text; None when unreadable)
        visible: dict[str, str] = {}
        for directory in self.directories:
            for path in sorted(directory.rglob(f"*{SUFFIX}")):
                name = path.relative_to(directory).as_posix()
                try:
                    text: str | None = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    text = None
                self.sources.append((path, name, text))
                if text is not None:
                    visible.setdefault(name, text)  # the first directory wins
        common = {
            "loader": DictLoader(visible),
            "undefined": StrictUndefined,
            "keep_trailing_newline": True,
            "trim_blocks": True,
            "lstrip_blocks": True,
        }
        self.visible = visible
        self.text_env = SandboxedEnvironment(autoescape=False, bytecode_cache=_bytecode(cache_dir, "text"), **common)
        self.html_env = SandboxedEnvironment(autoescape=True, bytecode_cache=_bytecode(cache_dir, "html"), **common)
        # the template chosen for (kind, locale, queue), and its HTML twin: the snapshot never changes, and
        # choosing again tries each missing candidate (an exception each) and asks the loader if it is fresh
        self._chosen: dict[tuple[str, str, str], tuple[Any, Any | None]] = {}

    def names(self, kind: str, locale: str, queue: str = "") -> list[str]:
        """Candidate template names, most specific first."""
        candidates = []
        if queue:
            candidates.append(f"queues/{queue}/{locale}/{kind}{SUFFIX}")
        candidates += [f"{locale}/{kind}{SUFFIX}", f"{DEFAULT_LOCALE}/{kind}{SUFFIX}"]
        return list(dict.fromkeys(candidates))

    def render(self, kind: str, locale: str, context: Mapping[str, Any], queue: str = "") -> Rendered:
        """Render one mail. Raises jinja2.TemplateError (e.g. TemplateNotFound, UndefinedError)."""
        chosen = self._chosen.get((kind, locale, queue))
        if chosen is None:
            text_template = self.text_env.select_template(self.names(kind, locale, queue))
            twin = self.html_env.get_template(text_template.name or kind) if "html" in text_template.blocks else None
            chosen = self._chosen[(kind, locale, queue)] = (text_template, twin)
        text_template, html_template = chosen
        name = text_template.name or kind
        data = {**empty_context(kind), **context}
        text = _text_part(text_template, data)
        subject = _block(text_template, "subject", data) if "subject" in text_template.blocks else ""
        html = _block(html_template, "html", data) if html_template is not None else ""
        return Rendered(subject=" ".join(subject.split()), text=text.strip("\n") + "\n", html=html, template=name)

    def files(self) -> list[tuple[Path, str]]:
        """Every template file in the search path, as (path, template name)."""
        return [(path, name) for path, name, _ in self.sources]

    def check(self) -> list[Problem]:
        """Compile and render every template once; every kind must exist in English."""
        problems = []
        for path, name, source in self.sources:
            problems += _check_one(self, path, name, source)
        for kind in KINDS:
            if not any(n == f"{DEFAULT_LOCALE}/{kind}{SUFFIX}" for _, n in self.files()):
                problems.append(
                    Problem(f"{DEFAULT_LOCALE}/{kind}{SUFFIX}", 0, "missing: every kind needs an English template")
                )
        return problems


def _bytecode(cache_dir: Path | None, environment: str) -> BytecodeCache | None:
    if cache_dir is None:
        return None
    folder = cache_dir / "templates" / environment
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only data directory: compile at each start, as before
    return FileSystemBytecodeCache(str(folder))


def _block(template: Any, block: str, data: Mapping[str, Any]) -> str:
    return "".join(template.blocks[block](template.new_context(dict(data))))


def _text_part(template: Any, data: Mapping[str, Any]) -> str:
    """The ``text`` block; in a file without one, everything outside the subject and html blocks."""
    if "text" in template.blocks:
        return _block(template, "text", data)
    context = template.new_context(dict(data))
    for block in ("subject", "html"):
        context.blocks[block] = [lambda _ctx: iter(())]
    return "".join(template.root_render_func(context))


def _check_one(templates: Templates, path: Path, name: str, source: str | None) -> list[Problem]:
    file = str(path)
    if source is None:
        return [Problem(file, 0, "cannot read it as UTF-8 text")]
    try:
        tree = templates.text_env.parse(source, name, file)
    except TemplateSyntaxError as exc:
        return [Problem(file, exc.lineno or 0, f"syntax error: {exc.message}")]
    kind = kind_of(name)
    known = known_names(kind)
    data = sample_context(kind)
    undeclared = meta.find_undeclared_variables(tree)
    if known is None:  # a kind nobody registered: its own names are the caller's business
        data.update({n: _Anything() for n in undeclared if n not in data})
    else:
        problems = []
        for unknown in sorted(undeclared - known):
            line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == unknown), 0)
            problems.append(Problem(file, line, f"unknown variable {unknown!r} (known: {', '.join(sorted(known))})"))
        if problems:
            return problems
    for env, parts in ((templates.text_env, ("subject", "text")), (templates.html_env, ("html",))):
        # the file that renders is compiled once, here, for the check and every mail after it
        template = env.get_template(name) if templates.visible.get(name) == source else env.from_string(source)
        try:
            for part in parts:
                if part == "text":
                    _text_part(template, data)
                elif part in template.blocks:
                    _block(template, part, data)
        except Exception as exc:  # a template may raise anything a filter raises
            if known is None and not isinstance(exc, TemplateError):
                continue  # the lenient sample values of an unregistered kind do not do arithmetic
            return [Problem(file, _line_of(exc, template), f"{type(exc).__name__}: {exc}")]
    return []


class _Anything:
    """A lenient sample value for names of unregistered kinds: any attribute, item or loop works."""

    def __getattr__(self, name: str) -> _Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> _Anything:
        return self

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __str__(self) -> str:
        return "sample"


def _line_of(exc: BaseException, template: Any) -> int:
    """The template line an error was raised at: map the compiled code's line back to the source."""
    line = getattr(exc, "lineno", None)
    if line:
        return int(line)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in ("<template>", template.filename) and frame.lineno:
            return int(template.get_corresponding_lineno(frame.lineno))
    return 0


def load(directories: Iterable[Path], *, check: bool = True, cache_dir: Path | None = None) -> Templates:
    """Build the templates and check them all; raise ConfigError naming every problem.

    ``check=False`` only builds them (each is compiled when first rendered): see ``app.build``."""
    templates = Templates(directories, cache_dir)
    marker = _checked_marker(templates, cache_dir) if check else None
    if marker is not None and marker.exists():
        return templates  # this very set of files passed this very check before: see _checked_marker
    problems = templates.check() if check else []
    if problems:
        raise ConfigError("templates: " + "; ".join(str(p) for p in problems))
    if marker is not None:
        with contextlib.suppress(OSError):
            marker.touch()
    return templates


def _checked_marker(templates: Templates, cache_dir: Path | None) -> Path | None:
    """A file named by everything the check depends on: each template's name, path and text, the kinds
    of mail and their documented names, and this module's own version. It exists once that input
    passed; a restart with nothing changed then skips the check (a second or more of CPU)."""
    if cache_dir is None:
        return None
    digest = hashlib.sha256()
    for path, name, source in templates.sources:
        digest.update(repr((str(path), name, source)).encode("utf-8", "surrogatepass"))
    digest.update(repr(sorted((k, sorted(v)) for k, v in _KIND_SAMPLES.items())).encode())
    digest.update(repr(sorted(BASE_SAMPLE)).encode())
    digest.update(Path(__file__).read_bytes())
    return cache_dir / "templates" / f"checked-{digest.hexdigest()}"
