"""The stdlib's MIME tree of a mail, and the bytes of its parts, with as few copies of a big mail as it allows.

``email.message_from_bytes`` first turns the whole mail into one str, then
copies that into a ``StringIO`` that holds four bytes a character: a 20 MB
mail costs some 160 MB at once before a single line is read. :func:`read`
feeds the same parser the bytes a slice at a time instead (the slices the
stdlib itself reads from its ``StringIO``), so only the lines of the mail and
the parts they are joined into are ever held.

Even so the parser walks every line in Python: a 20 MB attachment is some
270,000 lines, a second of CPU, and a list of them beside their join. With
``elide`` (what :func:`mailgate.mail.parse.parse` asks for), each long run of
lines made only of base64's alphabet is fed as one token line instead. Such a
run can hold nothing the parser decides on (a boundary line starts with
``--``, a header has a colon, a blank line is not in it), so the tree is the
same; :func:`payload` decodes a part that is one run straight from the mail's
bytes, and :func:`restore` puts the runs back where a part is written out again.

``get_payload(decode=True)`` of a base64 part holds its text, those bytes,
a list of every line and the lines joined at once; :func:`payload` drops the
line ends with one ``translate`` and decodes what is left the same way.

Importing this module also gives ``email.feedparser`` a ``re`` of its own whose
``compile`` reads the parser's boundary expression without compiling it
(:func:`compile_pattern`): the same matches, in every parse of this process.
"""

from __future__ import annotations

import binascii
import email.feedparser
import re
import secrets
import types
from dataclasses import dataclass
from email import policy as email_policy
from email._encoded_words import decode_b
from email.feedparser import BytesFeedParser
from email.message import Message
from functools import cached_property
from typing import Any

FEED_CHUNK = 8192  # what email.parser.Parser reads at a time: the parser sees the pieces message_from_bytes gives it
ELIDE_FROM = 65536  # a smaller mail is fed whole: the search would cost more than it saves
RUN_MIN = 16384  # the least run of encoded lines fed as a token
# lines of 40 or more, then a last one that may be short and padded; possessive, so the search keeps no
# state a line (a plain "+" keeps ~180 bytes for each, 47 MB for a 20 MB attachment)
_RUN = re.compile(rb"(?:^[A-Za-z0-9+/]{40,998}\r?\n)++(?:^(?=[A-Za-z0-9+/=])[A-Za-z0-9+/]{0,998}={0,2}\r?\n)?", re.M)
_MARK = "_mailgate_elided"  # the attribute of a part whose text holds tokens


# -- boundaries ---------------------------------------------------------------------------------------
# The feed parser compiles a regular expression for every multipart it meets, from its boundary: a
# boundary is new in every mail, so re's cache never has it, and compiling costs ~140 µs, more than
# parsing a short part. The expression is the boundary's text followed by a fixed tail; it is matched
# here as that text and the tail compiled once, which is what the expression matches, line for line.
_BOUNDARY_HEAD = "(?P<sep>"
_BOUNDARY_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_TAIL = re.compile(_BOUNDARY_TAIL[1:])
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


class _Boundary:
    """``re.compile("(?P<sep>" + re.escape(separator) + _BOUNDARY_TAIL)``, for ``match`` alone."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        return _TAIL.match(line, len(self.separator)) if line.startswith(self.separator) else None


def compile_pattern(pattern: str, flags: int = 0) -> re.Pattern[str] | _Boundary:
    """``re.compile`` as the feed parser calls it: its boundary expression as a :class:`_Boundary`."""
    if not flags and pattern.startswith(_BOUNDARY_HEAD) and pattern.endswith(_BOUNDARY_TAIL):
        escaped = pattern[len(_BOUNDARY_HEAD) : -len(_BOUNDARY_TAIL)]
        separator = _UNESCAPE.sub(r"\1", escaped)
        if re.escape(separator) == escaped:  # exactly the expression of that separator, nothing else
            return _Boundary(separator)
    return re.compile(pattern, flags)


def _quick_boundaries() -> None:
    """The feed parser's ``re``, with :func:`compile_pattern` for ``compile`` (every other name is re's)."""
    module = types.ModuleType("re", "re, with the feed parser's boundary expressions matched without compiling")
    module.__dict__.update({k: v for k, v in vars(re).items() if not k.startswith("__")})
    module.compile = compile_pattern  # type: ignore[attr-defined]
    email.feedparser.re = module  # type: ignore[attr-defined]


_quick_boundaries()


@dataclass(frozen=True)
class Elided:
    """The runs cut out of a mail's parse: token ``i`` stands for ``raw[runs[i][0]:runs[i][1]]``."""

    raw: bytes
    nonce: str
    runs: list[tuple[int, int]]

    @cached_property
    def token(self) -> re.Pattern[str]:
        return re.compile(self.nonce + r"(\d+)_")

    def restore(self, text: str) -> str:
        """The text as the parser had made it of the whole mail.

        A token stands for its run without the run's last line end: the parser kept or dropped
        the token line's own line end (it drops the one before a boundary), as it would the run's."""

        def run(found: re.Match[str]) -> str:
            start, end = self.runs[int(found.group(1))]
            return self.raw[start : end - len(_line_end(self.raw, end))].decode("ascii")

        return self.token.sub(run, text)

    def direct(self, text: str) -> bytes | None:
        """The bytes of a base64 part whose text is one run and line ends, decoded from the mail itself;
        None where the stdlib's reading could differ (it is then decoded from the restored text)."""
        pieces = self.token.split(text)
        if len(pieces) != 3 or pieces[0].strip("\r\n") or pieces[2].strip("\r\n"):
            return None
        start, end = self.runs[int(pieces[1])]
        characters = end - start - self.raw.count(b"\r", start, end) - self.raw.count(b"\n", start, end)
        if characters % 4:  # decode_b would note the padding: leave it to decode_b
            return None
        # the run's pattern allows "=" only at its end, at most two: what decode_b's validation asks
        try:
            return binascii.a2b_base64(memoryview(self.raw)[start:end])  # skips the line ends
        except binascii.Error:
            return None


class IndexedMessage(Message):
    """compat32's Message, whose :meth:`get` finds a header in a dict instead of walking them all, and
    which parses a header's parameters once.

    Reading a mail asks each part for its type, its parameters and its encoding a dozen times (the feed
    parser, then our walk), and each ask lowered and compared every header name, and split and unquoted
    the parameters again: a sixth of the parse. Both are made at the first ask and dropped by every
    change of the headers (the methods that append or replace one, and any new list: ``__delitem__`` and
    ``set_boundary`` assign ``_headers``). A shallow copy shares the list but not this: change a copy's
    headers and the original may answer from before (nothing copies a parsed tree; ``deepcopy`` is safe).
    """

    _index: dict[str, tuple[str, Any]] | None = None
    _params: dict[str, Any] | None = None

    @property
    def _headers(self) -> list[tuple[str, Any]]:
        return self._header_list

    @_headers.setter
    def _headers(self, value: list[tuple[str, Any]]) -> None:
        self._header_list = value
        self._changed()

    def _changed(self) -> None:
        self._index = self._params = None

    def get(self, name: str, failobj: Any = None) -> Any:
        found = self._first(name)
        return failobj if found is None else self.policy.header_fetch_parse(*found)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._first(name) is not None

    def _first(self, name: str) -> tuple[str, Any] | None:
        index = self._index
        if index is None:
            index = {}
            for key, value in self._header_list:
                index.setdefault(key.lower(), (key, value))
            self._index = index
        return index.get(name.lower())

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        params = self._params
        if params is None:
            params = self._params = {}
        key = header.lower()
        if key not in params:
            params[key] = super()._get_params_preserve(_ABSENT, key)  # type: ignore[misc]
        found = params[key]
        return failobj if found is _ABSENT else list(found)  # a copy: a caller may change its list

    def __setitem__(self, name: str, val: Any) -> None:
        self._changed()
        super().__setitem__(name, val)

    def set_raw(self, name: str, value: Any) -> None:
        self._changed()
        super().set_raw(name, value)

    def add_header(self, _name: str, _value: str, **_params: Any) -> None:
        self._changed()
        super().add_header(_name, _value, **_params)

    def replace_header(self, _name: str, _value: Any) -> None:
        self._changed()
        super().replace_header(_name, _value)


_ABSENT = object()


def read(raw: bytes, headers_only: bool = False, elide: bool = False) -> Message:
    """What ``email.message_from_bytes(raw, policy=compat32)`` returns (the header block alone, with
    ``headers_only``: ``BytesHeaderParser``), fed a slice at a time; with ``elide``, long runs of
    base64 lines as tokens (see the module's docstring: read payloads with :func:`payload`)."""
    elided = _cut(raw) if elide and not headers_only and len(raw) >= ELIDE_FROM else None
    message = _feed(raw if elided is None else _fed(elided), headers_only)
    if elided is not None:
        for part in message.walk():
            texts = (part._payload, part.preamble, part.epilogue)  # type: ignore[attr-defined]
            if any(isinstance(t, str) and elided.nonce in t for t in texts):
                setattr(part, _MARK, elided)
    return message


def _feed(raw: bytes, headers_only: bool) -> Message:
    feeder = BytesFeedParser(IndexedMessage, policy=email_policy.compat32)
    if headers_only:
        feeder._set_headersonly()  # type: ignore[attr-defined]  # what email.parser.HeaderParser does
    view = memoryview(raw)
    for start in range(0, len(view), FEED_CHUNK):
        feeder.feed(view[start : start + FEED_CHUNK].tobytes())
    message: Message = feeder.close()
    return message


def _cut(raw: bytes) -> Elided | None:
    runs = [(m.start(), m.end()) for m in _RUN.finditer(raw) if m.end() - m.start() >= RUN_MIN]
    if not runs:
        return None
    nonce = "Mg" + secrets.token_hex(12)
    while nonce.encode("ascii") in raw:  # a mail cannot guess it; this makes sure
        nonce = "Mg" + secrets.token_hex(12)
    return Elided(raw, nonce, runs)


def _fed(elided: Elided) -> bytes:
    """The mail with each run replaced by its token and the line end of the run's last line."""
    raw, pieces, at = elided.raw, [], 0
    for index, (start, end) in enumerate(elided.runs):
        pieces += [raw[at:start], f"{elided.nonce}{index}_".encode("ascii"), _line_end(raw, end)]
        at = end
    pieces.append(raw[at:])
    return b"".join(pieces)


def _line_end(raw: bytes, end: int) -> bytes:
    """The line end of the run that ends at ``end`` (the pattern ends each run with one)."""
    return b"\r\n" if raw[end - 2 : end] == b"\r\n" else b"\n"


def restore(message: Message) -> None:
    """Put back the runs :func:`read` cut out of this tree, so that it can be written out as it came."""
    for part in message.walk():
        elided: Elided | None = getattr(part, _MARK, None)
        if elided is None:
            continue
        delattr(part, _MARK)
        if isinstance(part._payload, str):  # type: ignore[attr-defined]
            part.set_payload(elided.restore(part._payload))  # type: ignore[attr-defined]
        for name in ("preamble", "epilogue"):
            text = getattr(part, name)
            if isinstance(text, str):
                setattr(part, name, elided.restore(text))


def payload(part: Message) -> bytes:
    """The part's body with its transfer encoding undone, as ``get_payload(decode=True)`` reads it
    (a part without bytes: its text as bytes; a multipart: b"")."""
    text = part.get_payload()
    elided: Elided | None = getattr(part, _MARK, None)
    encoded = str(part.get("content-transfer-encoding", "")).lower() == "base64"
    if elided is not None and isinstance(text, str):
        direct = elided.direct(text) if encoded else None
        if direct is not None:
            return direct
        restore(part)
        text = part.get_payload()
    if isinstance(text, str) and text.isascii() and encoded:
        value, defects = decode_b(text.encode("ascii").translate(None, b"\r\n"))  # == b"".join(lines)
        for defect in defects:
            part.policy.handle_defect(part, defect)
        return value
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
