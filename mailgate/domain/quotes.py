"""Quote stripping: what part of a reply is new.

When a customer or an agent answers by mail, their client adds the history of
the conversation below (or above) the answer, and often a signature. mailgate
keeps the full original mail; what it shows on the ticket and relays to the
other side is only the *new text*. `split_reply` cuts a plain-text body into
four parts: the new text, the quoted history, the signature, and, for a
forward, the forwarded message.

What counts as quoted history
-----------------------------

* Lines starting with ">" (after optional blanks), wherever they are. With
  the quote first and the answer below (bottom-posting), the answer is the new
  text; when answers are written between quoted lines (interleaving), every
  line not starting with ">" is kept, in order. (A line the writer meant to
  start with ">", such as a pasted shell prompt, is taken for a quote too.)
* The line that introduces a ">" block, also when the client wrapped it over
  two lines: "On … wrote:", "Am … schrieb …:", "Le … a écrit :", "Il … ha
  scritto:", "El … escribió:", "Em … escreveu:", "Op … schreef …:", "Den …
  skrev …:", "W dniu … napisał(a):", "… написал(а):", "… пише:", Gmail's
  "2016-10-24 15:36 GMT+02:00 Name <addr>:" and "<date>, Name <addr>:".
* From an intro line that is *not* followed by a ">" block (the client quoted
  without ">"), everything below is history, provided the intro holds a time
  (such as 15:36) or an address (an "@"); otherwise it is ordinary text.
* From "-----Original Message-----" (and its translations, such as
  "-----Mensaje original-----", "-----Ursprüngliche Nachricht-----",
  "-----Message d'origine-----", "-----Исходное сообщение-----") down.
* From an Outlook header block down: a line naming the sender (From:, Von:,
  Da:, De :, От:, Från:, Van:, Od:, Від: …) with at least two other header
  fields (Sent:/Date:/To:/Cc:/Subject: or their translations) in the eight
  lines below it. A rule of dashes or underscores just above the block belongs
  to the history too.

Forwards
--------

A forward marker ("---------- Forwarded message ---------", "Begin forwarded
message:", "-------- Message transféré --------", "---------- Weitergeleitete
Nachricht ----------", "-------- Пересланное сообщение --------" …) ends the
new text: the lines above it are the sender's comment (the new text, which may
be empty), the lines below it are the forwarded message. Whichever comes first
wins: a forward marker found inside quoted history is history, and history
found inside a forwarded message is part of the forward. A forward made with
Outlook carries no marker, only a header block, and so counts as history.

Signatures
----------

The convention: a signature starts at a line that is "-- " (the RFC 3676
delimiter) or "--" alone, or at a footer that a phone or mail app adds, such
as "Sent from my iPhone", "Envoyé de mon iPhone", "Von meinem iPhone
gesendet", "Отправлено с iPhone", "Enviado desde mi iPhone", "Get Outlook for
iOS" or "Sent from Mail for Windows". Everything from the first such line to
the end of the new text is the signature; a "--" delimiter line itself is
dropped, a footer line is kept as the signature's first line. A sign-off
without a delimiter ("Thanks,\\nAnna") is part of the new text: mailgate does
not guess signatures.

The result
----------

Line endings become "\\n" (CRLF and CR are accepted). The new text keeps its
lines as written, so commands at its top (``#close``, ``#assign bob``) stay
where the command reader looks for them; blank lines left where a quote was
removed are merged into one, and blank lines at both ends are dropped. Any
string is accepted, and the time taken grows linearly with its length: lines
longer than `MAX_MARKER_LEN` are never taken for markers.

The phrases of every language live in `mailgate.domain.quote_patterns`; this module
compiles them once, at import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailgate.domain.quote_patterns import LANGUAGES

# Longest line (whitespace collapsed) that is tested against a marker pattern.
# Real intros and headers are far shorter; the bound keeps the scan linear.
MAX_MARKER_LEN = 300
# How far below a sender field the other fields of an Outlook block may sit.
HEADER_WINDOW = 8
# How many other fields must be found there.
HEADER_MIN_FIELDS = 2


@dataclass(frozen=True)
class Reply:
    """A reply body cut into its parts; every part uses "\\n" line endings."""

    new_text: str  # the new part, stripped of quote, quote header, separators, trailing blank lines
    quoted: str  # what was removed as quoted history ("" if none)
    signature: str  # the signature block removed ("" if none)
    forwarded: str  # for forwards: the part below the "Forwarded message" marker ("" if none)


def _either(patterns: Iterable[str]) -> re.Pattern[str]:
    unique = list(dict.fromkeys(patterns))
    return re.compile("|".join(f"(?:{p})" for p in unique), re.IGNORECASE)


def _phrases(phrases: Iterable[str]) -> str:
    unique = sorted(set(phrases), key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", " ") for p in unique)


_FULL_INTRO = _either(p for lang in LANGUAGES for p in lang.intros)
_TAIL_INTRO = _either(p for lang in LANGUAGES for p in lang.tail_intros)
_DASHES = r"[-_=*]{2,}"
_ORIGINAL = re.compile(
    rf"{_DASHES} ?(?:{_phrases(p for lang in LANGUAGES for p in lang.original_message)})"
    r" ?:? ?[-_=*]*",
    re.IGNORECASE,
)
_FORWARD = _either(
    [
        rf"{_DASHES} ?(?:{_phrases(p for lang in LANGUAGES for p in lang.forward_phrases)})"
        r" ?:? ?[-_=*]*",
        *(p for lang in LANGUAGES for p in lang.forward_intros),
    ]
)
_FROM_NAMES = frozenset(n.casefold() for lang in LANGUAGES for n in lang.header_from)
_HEADER = re.compile(
    r"\*{0,2}(" + _phrases(n for lang in LANGUAGES for n in (*lang.header_from, *lang.header_fields)) + r")\*{0,2} ?:",
    re.IGNORECASE,
)
_FOOTER = _either(p for lang in LANGUAGES for p in lang.mobile_footers)
_RULE = re.compile(r"[-_=*]{5,}")
# Zoho: "---- On Mon, 05 Jan 2026 09:00:00 +0100 Bob <bob@x.com> wrote ----"
_DASHED_INTRO = re.compile(r"-{2,} ?(.+?) ?-{2,}")
# "2013/7/20 Bob <bob@x.com>" above "|"-quoted lines
_DATE_ADDRESS = re.compile(r"\d{4}[/.-]\d{1,2}[/.-]\d{1,2}\b.*<[^<>\s]+@[^<>\s]+>:?")
MAX_INTRO_LINES = 4  # Gmail may wrap its intro over four lines
# An intro not followed by a ">" block must carry a time or an address to end the new text.
_TIME_OR_ADDRESS = re.compile(r"@|\d:\d\d")
_HAS_DIGIT_AT_OR_ANGLE = re.compile(r"[\d@<]")


def split_reply(text: str) -> Reply:
    """Cut a plain-text reply body into new text, quoted history, signature, forward."""
    lines = _lines(text)
    scan = _Scan(lines)
    cut, forward = scan.find_cut()
    kept: list[str | None] = []
    removed: list[str] = []
    for i in range(cut):
        if scan.quoted[i] or i in scan.intro_lines:
            kept.append(None)
            removed.append(lines[i])
        else:
            kept.append(lines[i])
    forwarded = ""
    if cut < len(lines):
        if forward:
            forwarded = _join(lines[cut + 1 :])
        else:
            removed.extend(lines[cut:])
    new_lines = _collapse(kept)
    if not any(line.strip() for line in new_lines):  # never empty a mail that has text of its own
        new_lines = _own_text_below(lines, cut, scan)
    new_lines, signature = _split_signature(new_lines)
    return Reply(
        new_text=_join(new_lines),
        quoted=_join(removed),
        signature=signature,
        forwarded=forwarded,
    )


def _own_text_below(lines: list[str], cut: int, scan: _Scan) -> list[str]:
    """Nothing above the history: an intro at the very top above unquoted text, or a forward without a
    comment. The unquoted text below the marker (and below a header block) is then the mail's own."""
    start = next((i for i in range(len(lines)) if scan.norm[i] and i not in scan.intro_lines), len(lines))
    rest = [
        line for i, line in enumerate(lines) if i > min(cut, start) and not scan.quoted[i] and i not in scan.intro_lines
    ]
    while rest and (not rest[0].strip() or _HEADER.match(_normalize(rest[0]))):
        rest.pop(0)
    return _collapse(list(rest))


def _lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.removeprefix("\ufeff").split("\n")


def _normalize(line: str) -> str:
    """Collapse whitespace so that patterns need not care about it; "" if too long."""
    if len(line) > 4 * MAX_MARKER_LEN:
        return ""
    norm = " ".join(line.split())
    return norm if len(norm) <= MAX_MARKER_LEN else ""


class _Norms:
    """Each line's :func:`_normalize` ("" if quoted or blank), made when first asked for (most never are)."""

    def __init__(self, lines: list[str], quoted: list[bool], blank: list[bool]) -> None:
        self._lines, self._quoted, self._blank = lines, quoted, blank
        self._made: list[str | None] = [None] * len(lines)

    def __getitem__(self, i: int) -> str:
        made = self._made[i]
        if made is None:
            made = self._made[i] = "" if self._quoted[i] or self._blank[i] else _normalize(self._lines[i])
        return made

    def span(self, start: int, end: int) -> list[str]:
        return [self[i] for i in range(start, end)]


# The first character of a marker that needs no colon: a rule of dashes (forward, original message, a
# dashed intro) or a digit (Gmail's "2013/7/20 Bob <bob@x.com>"). Every other marker holds a colon.
_RULE_OR_DIGIT = re.compile(r"\s*(?:[-_=*]|\d)")


class _Scan:
    """One pass over the lines, top-down, looking for where history starts."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.quoted = [line.lstrip().startswith(">") for line in lines]
        stripped = [line.strip() for line in lines]
        self.blank = [not line for line in stripped]
        self.norm = _Norms(lines, self.quoted, self.blank)
        self.next_nonblank = [0] * (len(lines) + 1)
        self.next_nonblank[len(lines)] = len(lines)
        # The first line at or below each that ends with a colon, as an intro's last line does.
        self.next_colon_end = [len(lines)] * (len(lines) + 1)
        for i in range(len(lines) - 1, -1, -1):
            self.next_nonblank[i] = self.next_nonblank[i + 1] if self.blank[i] else i
            self.next_colon_end[i] = i if stripped[i].endswith(":") else self.next_colon_end[i + 1]
        self.intro_lines: set[int] = set()
        self._headers: dict[int, str | None] = {}

    def may_start_marker(self, i: int) -> bool:
        """Whether any test of :meth:`find_cut` can match at line i; a cheap first look that skips prose.

        Each marker pattern starts with a rule or a digit, or holds a colon (a header's name, an intro's
        end: every intro ends with one, also one wrapped over up to MAX_INTRO_LINES lines)."""
        line = self.lines[i]
        return ":" in line or self.longest_intro(i) > 1 or _RULE_OR_DIGIT.match(line) is not None

    def longest_intro(self, i: int) -> int:
        """MAX_INTRO_LINES when a line below i within reach ends with a colon (an intro may end there), else 1."""
        return MAX_INTRO_LINES if self.next_colon_end[i + 1] < min(len(self.lines), i + MAX_INTRO_LINES) else 1

    def find_cut(self) -> tuple[int, bool]:
        """Index of the first line of unquoted history, and whether it is a forward.

        On the way, intros of ">" blocks are recorded in `intro_lines`.
        """
        n = len(self.lines)
        i = 0
        while i < n:
            if self.quoted[i] or self.blank[i] or not self.may_start_marker(i):
                i += 1
                continue
            norm = self.norm[i]
            if not norm:
                i += 1
                continue
            if _FORWARD.fullmatch(norm):
                return i, True
            if _ORIGINAL.fullmatch(norm):
                return i, False
            if self._header_block_at(i):
                return self._rule_above(i), False
            dashed = _DASHED_INTRO.fullmatch(norm)
            if dashed and _is_intro(dashed.group(1).rstrip(":") + ":"):
                return i, False
            if _DATE_ADDRESS.fullmatch(norm) and self._bar_quoted(self.next_nonblank[i + 1]):
                return i, False
            span = self._intro_at(i)
            if span:
                end = i + span
                following = self.next_nonblank[end]
                if following < n and self.quoted[following]:
                    self.intro_lines.update(range(i, following))
                    i = following
                    continue
                intro = " ".join(self.norm.span(i, end))
                if _TIME_OR_ADDRESS.search(intro):
                    return i, False
            i += 1
        return n, False

    def _header_name(self, i: int) -> str | None:
        if i not in self._headers:
            match = _HEADER.match(self.norm[i])
            self._headers[i] = match.group(1).casefold() if match else None
        return self._headers[i]

    def _bar_quoted(self, i: int) -> bool:
        return i < len(self.lines) and self.lines[i].lstrip().startswith("|")

    def _header_block_at(self, i: int) -> bool:
        """A From:/Sent:/To: block; Hotmail's may start with Date: when a From: follows within the block."""
        first = self._header_name(i)
        if first is None:
            return False
        names: set[str] = set()
        has_from = first in _FROM_NAMES
        for j in range(i + 1, min(i + 1 + HEADER_WINDOW, len(self.lines))):
            name = self._header_name(j)
            if name in _FROM_NAMES:
                has_from = True
            elif name is not None:
                names.add(name)
        if first not in _FROM_NAMES:
            names.add(first)
            return has_from and len(names) >= HEADER_MIN_FIELDS + 1
        return len(names) >= HEADER_MIN_FIELDS

    def _rule_above(self, i: int) -> int:
        """Start of the block at i: the separator line above it, if there is one."""
        j = i - 1
        while j >= 0 and j >= i - 3 and self.blank[j]:
            j -= 1
        if j >= 0 and (_RULE.fullmatch(self.norm[j]) or _ORIGINAL.fullmatch(self.norm[j])):
            return j
        return i

    def _intro_at(self, i: int) -> int:
        """How many lines (0, 1 or 2) form a quote intro starting at line i."""
        line = self.norm[i]
        if _is_intro(line):
            return 1
        joined = line
        for span in range(2, self.longest_intro(i) + 1):
            nxt = self.norm[i + span - 1] if i + span - 1 < len(self.lines) else ""
            if not nxt or len(joined) + len(nxt) >= MAX_MARKER_LEN:
                return 0
            joined = f"{joined} {nxt}"
            if not nxt.endswith(":"):
                continue  # every intro ends with a colon (quote_patterns): no match, however long the line
            if _FULL_INTRO.fullmatch(joined) and not _FULL_INTRO.fullmatch(nxt):
                return span
            if _is_intro(joined) and not _is_intro(nxt):
                return span
        return 0


def is_intro(line: str) -> bool:
    """A line that introduces quoted history ("On … wrote:", "Le … a écrit :", …), in any language we know."""
    return _is_intro(" ".join(line.split()))


def _is_intro(line: str) -> bool:
    if not line.endswith(":"):
        return False
    if _FULL_INTRO.fullmatch(line):
        return True
    return bool(_HAS_DIGIT_AT_OR_ANGLE.search(line) and _TAIL_INTRO.fullmatch(line))


def _collapse(kept: list[str | None]) -> list[str]:
    """Drop removed lines (None); blank lines around a removal become one."""
    out: list[str] = []
    pending: list[str] = []
    removal = False
    for line in kept:
        if line is None:
            removal = True
        elif not line.strip():
            pending.append(line)
        else:
            if removal:
                if pending:
                    out.append("")
            else:
                out.extend(pending)
            pending = []
            removal = False
            out.append(line)
    return out


def _split_signature(lines: list[str]) -> tuple[list[str], str]:
    for i, line in enumerate(lines):
        if line.strip() == "--":
            return lines[:i], _join(lines[i + 1 :])
        norm = _normalize(line)
        if norm and _FOOTER.fullmatch(norm):
            return lines[:i], _join(lines[i:])
    return lines, ""


def _join(lines: list[str]) -> str:
    """Join lines, dropping blank lines at both ends."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])
