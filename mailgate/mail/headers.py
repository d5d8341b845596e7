"""Header values read leniently: encoded words wherever clients put them, 8-bit bytes, a broken header block.

RFC 2047 puts encoded words between spaces, outside quotes, each whole in one
charset. Real clients put them inside quoted names, glued to other text, and
split one multibyte character over two words; :func:`decode_words` reads all
of those, through the same charset supersets as bodies (:mod:`.charsets`).

:func:`repair` fixes the two header-block breakages that lose From and
Subject in practice: a banner line above the headers (``---- Original email
message ----``) and a continuation line its mailer forgot to indent. It only
changes what the parser sees; the raw bytes are stored unchanged.
"""

from __future__ import annotations

import base64
import binascii
import re

from mailgate.mail.charsets import codec_for, decode, header_bytes_text

_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?\s]*)\?=")
_GAP = re.compile(r"[ \t\r\n]*")
_FIELD = re.compile(rb"^[!-9;-~]{1,100}:")
_BANNER = re.compile(rb"^[ \t]*[-=_*~#]{2,}[^\r\n:]{0,200}[-=_*~#]{2,}[ \t]*\r?$|^[ \t]*[-=_*~#]{4,}[ \t]*\r?$")
MAX_HEADER_LINES = 2000
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")  # where the header block ends


def header_block_end(raw: bytes) -> int:
    """An offset the header block surely ends before: just past the first blank line, whatever its line
    ends (CRLF, LF or a bare CR, as the stdlib's parser reads them); the whole mail when there is none.
    For a reader that needs the headers alone: the stdlib's header parser walks a body line by line to skip it.
    """
    ends = [found + 3 for found in (raw.find(b"\n\n"), raw.find(b"\n\r\n"), raw.find(b"\r\r")) if found >= 0]
    return min(ends, default=len(raw))


def decode_words(value: str, hint: str | None = None) -> str:
    """``value`` with every RFC 2047 encoded word decoded, wherever it stands; never raises."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0
    run: list[tuple[str, bytes]] = []  # adjacent words: (charset, bytes), joined before decoding
    for match in _WORD.finditer(value):
        gap = value[pos : match.start()]
        if run and _GAP.fullmatch(gap) is None:
            out.append(_flush(run, hint))
            run = []
            out.append(gap)
        elif not run:
            out.append(gap)
        charset = match.group(1).split("*", 1)[0]  # RFC 2231 language suffix: =?utf-8*en?Q?...?=
        data = _word_bytes(match.group(2).upper(), match.group(3))
        if data is None:
            out.append(_flush(run, hint) if run else "")
            run = []
            out.append(match.group(0))
        elif run and run[-1][0].lower() == charset.lower():
            run[-1] = (run[-1][0], run[-1][1] + data)
        else:
            run.append((charset, data))
        pos = match.end()
    out.append(_flush(run, hint) if run else "")
    out.append(value[pos:])
    return "".join(out)


def _word_bytes(kind: str, text: str) -> bytes | None:
    if kind == "B":
        text = text.rstrip("=")
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
    data = re.sub(r"=([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text.replace("_", " "))
    return data.encode("latin-1", "replace")


def _flush(run: list[tuple[str, bytes]], hint: str | None) -> str:
    return "".join(decode(data, charset if codec_for(charset) else hint)[0] for charset, data in run)


def header_text(value: str, hint: str | None = None) -> str:
    """A raw header value as text: 8-bit bytes read (body charset as hint), then encoded words."""
    return decode_words(header_bytes_text(value, hint), hint)


def repair(raw: bytes) -> tuple[bytes, list[str]]:
    """The raw mail with a banner above the headers dropped and unindented continuations indented.

    Returns the bytes to parse and a note for each change (they become parse defects).
    """
    blank = _BLANK_LINE.search(raw)
    if not blank:
        return raw, []
    lines = raw[: blank.start()].split(b"\n")  # the header block alone: a big body is never copied
    notes: list[str] = []
    if lines and not _FIELD.match(lines[0]) and _BANNER.match(lines[0]) and len(lines) > 1 and _FIELD.match(lines[1]):
        notes.append("BannerAboveHeaders: the first line was no header; it was skipped")
        lines = lines[1:]
    last_field = max((i for i, line in enumerate(lines[:MAX_HEADER_LINES]) if _FIELD.match(line)), default=0)
    fixed = [lines[0]] if lines else []
    for index, line in enumerate(lines[1:MAX_HEADER_LINES], 1):
        if index > last_field or line[:1] in (b" ", b"\t") or _FIELD.match(line) or not line.strip(b"\r"):
            fixed.append(line)
        else:
            notes.append("UnindentedContinuation: a header line without a name was read as a continuation")
            fixed.append(b" " + line)
    if not notes:
        return raw, []
    return b"\n".join(fixed + lines[MAX_HEADER_LINES:]) + raw[blank.start() :], notes[:5]
