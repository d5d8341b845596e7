"""The stdlib's MIME tree of a mail, and the bytes of its parts, with as few copies of a big mail as it allows.

``email.message_from_bytes`` first turns the whole mail into one str, then
copies that into a ``StringIO`` that holds four bytes a character: a 20 MB
mail costs some 160 MB at once before a single line is read. :func:`read`
feeds the same parser the bytes a slice at a time instead (the slices the
stdlib itself reads from its ``StringIO``), so only the lines of the mail and
the parts they are joined into are ever held.

``get_payload(decode=True)`` of a base64 part holds its text, those bytes,
a list of every line and the lines joined at once; :func:`payload` drops the
line ends with one ``translate`` and decodes what is left the same way.
"""

from __future__ import annotations

from email import policy as email_policy
from email._encoded_words import decode_b
from email.feedparser import BytesFeedParser
from email.message import Message

FEED_CHUNK = 8192  # what email.parser.Parser reads at a time: the parser sees the pieces message_from_bytes gives it


def read(raw: bytes, headers_only: bool = False) -> Message:
    """What ``email.message_from_bytes(raw, policy=compat32)`` returns (the header block alone, with
    ``headers_only``: ``BytesHeaderParser``), fed a slice at a time."""
    feeder = BytesFeedParser(policy=email_policy.compat32)
    if headers_only:
        feeder._set_headersonly()  # type: ignore[attr-defined]  # what email.parser.HeaderParser does
    view = memoryview(raw)
    for start in range(0, len(view), FEED_CHUNK):
        feeder.feed(view[start : start + FEED_CHUNK].tobytes())
    message: Message = feeder.close()
    return message


def payload(part: Message) -> bytes:
    """The part's body with its transfer encoding undone, as ``get_payload(decode=True)`` reads it
    (a part without bytes: its text as bytes; a multipart: b"")."""
    text = part.get_payload()
    if isinstance(text, str) and text.isascii() and str(part.get("content-transfer-encoding", "")).lower() == "base64":
        value, defects = decode_b(text.encode("ascii").translate(None, b"\r\n"))  # == b"".join(lines)
        for defect in defects:
            part.policy.handle_defect(part, defect)
        return value
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""
