"""The structure every mail mailgate sends must have, checked on the bytes as they left.

One Message-ID and one Date; MIME-Version once, in the top header block only;
7-bit clean, or 8-bit declared (an 8bit transfer encoding, or UTF-8 headers of
an SMTPUTF8 mail) and only when the mail needs it; no line over 998 octets
(RFC 5322 2.1.1). tests/conftest.py applies :func:`problems` to every mail in
a test's sent maildir.
"""

from __future__ import annotations

import email
import re
from email import policy

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def problems(raw: bytes) -> list[str]:
    """What is wrong with one sent mail; [] when nothing is."""
    found: list[str] = []
    head = _HEADER_END.split(raw, 1)[0]
    top = email.message_from_bytes(raw, policy=policy.compat32)
    for name in ("Message-ID", "Date", "MIME-Version"):
        count = len(top.get_all(name, []))
        if count != 1:
            found.append(f"{count} {name} headers at the top")
    for part in _own_parts(top)[1:]:
        if part.get("MIME-Version") is not None:
            found.append("MIME-Version inside a part")
    long_lines = [n for n, line in enumerate(raw.split(b"\n"), 1) if len(line.rstrip(b"\r")) > 998]
    if long_lines:
        found.append(f"lines over 998 octets: {long_lines[:5]}")
    if not raw.isascii():
        smtputf8 = not head.isascii()
        declared = any(str(p.get("Content-Transfer-Encoding", "")).lower() in ("8bit", "binary") for p in top.walk())
        if not (smtputf8 or declared):
            found.append("8-bit bytes without an 8bit transfer encoding or UTF-8 headers")
    elif any(str(p.get("Content-Transfer-Encoding", "")).lower() in ("8bit", "binary") for p in top.walk()):
        found.append("declares 8bit but is 7-bit: needs neither 8BITMIME nor SMTPUTF8")
    return found


def _own_parts(message: email.message.Message) -> list[email.message.Message]:
    """The parts of the mail itself: an attached message (message/rfc822) has its own MIME-Version."""
    parts = [message]
    payload = message.get_payload()
    if message.is_multipart() and message.get_content_type() != "message/rfc822" and isinstance(payload, list):
        for child in payload:
            parts += _own_parts(child)
    return parts
