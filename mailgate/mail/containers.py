"""Attachments out of every container clients put them in, and their names from every place they write one.

- names: ``Content-Disposition`` ``filename`` then ``Content-Type`` ``name``
  (RFC 2231 continuations and charsets are read by the stdlib), RFC 2047
  encoded words inside them (not standard, but what Outlook and many webmails
  write), else a stable name from the Content-ID or the type, never the
  Content-ID's angle brackets and never a random one;
- TNEF (``winmail.dat``): the files inside, read by tnefparse;
- uuencoded blocks inside a text body, cut out of the text;
- AppleDouble: the data fork only (the resource fork is Finder metadata).
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from dataclasses import dataclass
from email.message import Message as StdMessage

from mailgate.mail.headers import decode_words

_UU_BEGIN = re.compile(r"^begin(?:-base64)? ([0-7]{3,4}) ([^\r\n]{1,255})\r?$", re.MULTILINE)
_UU_END = re.compile(r"^end\r?$", re.MULTILINE)
MAX_UU = 100


@dataclass
class Found:
    """A file found inside a container: the parser turns it into a ParsedAttachment."""

    filename: str
    content_type: str
    payload: bytes


def part_name(part: StdMessage, hint: str | None = None) -> str:
    """The name a client gave a part, decoded; "" when it has none."""
    name = part.get_filename() or part.get_param("name") or ""
    if isinstance(name, tuple):  # an RFC 2231 value the stdlib did not collapse
        from email.utils import collapse_rfc2231_value

        name = collapse_rfc2231_value(name)
    return decode_words(str(name), hint).strip()


def fallback_name(part: StdMessage, index: int) -> str:
    """A stable name for a part that has none: the file-like part of its Content-ID, else part-N.ext."""
    cid = str(part.get("content-id", "")).strip().strip("<>")
    local = cid.split("@", 1)[0]
    if re.fullmatch(r"[\w.-]{1,100}\.[A-Za-z0-9]{1,8}", local):
        return local
    ctype = part.get_content_type()
    if ctype == "message/rfc822":
        return f"message-{index}.eml"
    text = ctype.startswith("text/") or ctype in ("message/delivery-status", "message/feedback-report")
    ext = mimetypes.guess_extension(ctype, strict=False) or (".txt" if text else ".bin")
    return f"part-{index}{ext}"


def is_tnef(ctype: str, name: str) -> bool:
    return ctype in ("application/ms-tnef", "application/vnd.ms-tnef") or name.lower() == "winmail.dat"


def tnef_files(payload: bytes) -> tuple[list[Found], str, str] | None:
    """The files, plain body and HTML body inside a TNEF blob; None when tnefparse cannot read it."""
    try:
        from tnefparse import TNEF

        tnef = TNEF(payload, do_checksum=False)
    except Exception:  # not TNEF after all, or truncated: the blob stays an attachment
        return None
    files = []
    for item in tnef.attachments:
        data = item.data if isinstance(item.data, bytes) else b""
        try:
            name = str(item.long_filename() or "")
        except Exception:
            name = ""
        name = name.strip("\x00").strip() or "attachment"
        guessed = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
        files.append(Found(name, guessed, data))
    body = _text(tnef.body)
    html = _text(tnef.htmlbody)
    return files, body, html


def _text(value: object) -> str:
    if isinstance(value, bytes):
        from mailgate.mail.charsets import decode

        return decode(value.rstrip(b"\x00"), None)[0]
    return str(value or "").rstrip("\x00")


def uudecode(text: str) -> tuple[str, list[Found]]:
    """The text without its uuencoded blocks, and the files they held (a broken block stays text)."""
    if "begin " not in text:
        return text, []
    found: list[Found] = []
    out, pos = [], 0
    for begin in _UU_BEGIN.finditer(text):
        if begin.start() < pos or len(found) >= MAX_UU:
            continue
        end = _UU_END.search(text, begin.end())
        if end is None:
            break
        data = _uu_lines(text[begin.end() : end.start()])
        if data is None:
            continue
        name = begin.group(2).strip()
        found.append(Found(name, mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream", data))
        out.append(text[pos : begin.start()])
        pos = end.end()
    out.append(text[pos:])
    return "".join(out), found


def _uu_lines(block: str) -> bytes | None:
    data = bytearray()
    for line in block.splitlines():
        if not line.strip() or line.strip() == "`":
            continue
        try:
            data += binascii.a2b_uu(line)
        except binascii.Error:
            try:  # some encoders pad lines short; the length byte says how much is real
                nbytes = (((ord(line[0]) - 32) & 63) * 4 + 5) // 3
                data += binascii.a2b_uu(line[:nbytes])
            except (binascii.Error, IndexError):
                return None
    return bytes(data)


def appledouble_data_fork(part: StdMessage) -> list[StdMessage]:
    """The parts of a ``multipart/appledouble`` worth reading: all but the ``application/applefile`` fork."""
    payload = part.get_payload()
    children = [c for c in payload if isinstance(c, StdMessage)] if isinstance(payload, list) else []
    return [c for c in children if c.get_content_type() != "application/applefile"]
