"""Turn raw bytes into a ParsedMail, as well as the bytes can be read.

mail-parser does the MIME walking and the decoding of headers, charsets and
transfer encodings. Around it we add what a helpdesk needs: addresses
lowercased, Message-IDs normalised for lookups, HTML sanitised once (mailgate.sanitize),
a text version when only HTML was sent, attachment payloads as bytes with a
sniffed type, and a fallback parse that never raises, so a mail that defeats
the parser is still stored (its raw bytes are always kept as a blob).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.parser
import email.utils
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message as StdMessage
from typing import Any

from mailgate.sanitize import MAX_HTML, SAFE_ATTRIBUTES, SAFE_PROTOCOLS, SAFE_TAGS, html_to_text, sanitize

__all__ = [
    "MAX_HTML",
    "SAFE_ATTRIBUTES",
    "SAFE_PROTOCOLS",
    "SAFE_TAGS",
    "ParsedAttachment",
    "ParsedMail",
    "clean_header",
    "html_to_text",
    "message_ids",
    "parse",
    "safe_filename",
]

log = logging.getLogger("mailgate.parsing")

MAX_ATTACHMENTS = 500
MAX_TEXT = 5_000_000
_MSGID = re.compile(r"<[^<>\s]{1,1000}>")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_ESCAPED_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    payload: bytes
    content_id: str = ""
    inline: bool = False


@dataclass
class ParsedMail:
    message_id: str = ""
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    subject: str = ""
    from_addr: str = ""
    from_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    size: int = 0

    def header(self, name: str) -> str:
        """The first value of a header, decoded, or ""."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""


def message_ids(value: str | None) -> list[str]:
    """Every ``<id>`` in a Message-ID, In-Reply-To or References value, in order, as proper text.

    The same normalisation runs on the mail that carries an id and on the reply that names it,
    so an 8-bit id (RFC 6532) found in either is the same string for the lookup.
    """
    if not value:
        return []
    return _MSGID.findall(proper_text(value))


def proper_text(value: str) -> str:
    """Text that can be encoded: the stdlib keeps 8-bit header bytes as lone surrogates (surrogateescape).

    Those bytes are read as UTF-8 when they are UTF-8 (RFC 6532), else each bad byte becomes U+FFFD;
    a database driver would otherwise raise UnicodeEncodeError on them.
    """
    if not _SURROGATE.search(value):
        return value
    value = _NOT_ESCAPED_BYTE.sub("\ufffd", value)
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def clean_header(value: Any) -> str:
    """One line of printable text: header values never carry CR, LF or NUL onward."""
    text = proper_text(value if isinstance(value, str) else str(value or ""))
    return _CONTROL.sub("", text.replace("\r", " ").replace("\n", " ")).strip()


def parse(raw: bytes) -> ParsedMail:
    """Parse a mail; never raises. Problems end up in ``ParsedMail.defects``."""
    try:
        mail = _parse_with_mailparser(raw)
    except Exception as exc:
        log.warning("mail-parser failed (%s: %s); using the fallback parser", type(exc).__name__, exc)
        mail = _parse_fallback(raw)
        mail.defects.append(f"ParserError: {type(exc).__name__}: {str(exc)[:200]}")
    mail.size = len(raw)
    return mail


def _parse_with_mailparser(raw: bytes) -> ParsedMail:
    import mailparser

    parsed = mailparser.parse_from_bytes(raw)
    message: StdMessage = parsed.message
    headers = _header_index(message)
    mail = ParsedMail(headers=headers)
    mail.message_id = _first_msgid(headers.get("message-id", [""])[0] if headers.get("message-id") else "")
    mail.in_reply_to = message_ids(" ".join(headers.get("in-reply-to", [])))
    mail.references = message_ids(" ".join(headers.get("references", [])))
    mail.subject = clean_header(parsed.subject or "")[:2000]
    senders = _addresses(parsed.from_)
    if senders:
        mail.from_name, mail.from_addr = senders[0]
    mail.to = [a for _, a in _addresses(parsed.to)]
    mail.cc = [a for _, a in _addresses(parsed.cc)]
    mail.reply_to = [a for _, a in _addresses(parsed.reply_to)]
    mail.date = _aware(parsed.date, parsed.timezone)
    mail.html, notes = sanitize("\n".join(parsed.text_html))
    mail.defects.extend(notes)
    mail.text = _newlines(_limit("\n".join(parsed.text_plain), MAX_TEXT)) or html_to_text(mail.html)
    for index, item in enumerate(parsed.attachments):
        if index >= MAX_ATTACHMENTS:
            mail.defects.append(
                f"TooManyAttachments: only the first {MAX_ATTACHMENTS} are stored apart; the raw message keeps them all"
            )
            break
        mail.attachments.append(_attachment(item))
    for defect in parsed.defects:
        mail.defects.append(clean_header(defect)[:500])
    return mail


def _parse_fallback(raw: bytes) -> ParsedMail:
    """The top-level header block alone (the stdlib compat32 header parser), with every access guarded.

    Only the headers are parsed: a body deep enough to defeat mail-parser defeats a full stdlib
    parse too (both recurse per MIME level), but the From, To, Subject, Date and Message-ID of
    such a mail are still plain header lines that a helpdesk needs beside the raw blob.
    """
    mail = ParsedMail()
    try:
        message = email.parser.BytesHeaderParser().parsebytes(raw)
        mail.headers = _header_index(message)
        mail.subject = _decoded(message.get("subject", ""))[:2000]
        senders = _addresses(email.utils.getaddresses([_decoded(v) for v in message.get_all("from", [])]))
        if senders:
            mail.from_name, mail.from_addr = senders[0]
        mail.to = [a for _, a in _addresses(email.utils.getaddresses([_decoded(v) for v in message.get_all("to", [])]))]
        mail.cc = [a for _, a in _addresses(email.utils.getaddresses([_decoded(v) for v in message.get_all("cc", [])]))]
        mail.date = _header_date(str(message.get("date", "")))
        mail.message_id = _first_msgid(str(message.get("message-id", "")))
        mail.in_reply_to = message_ids(str(message.get("in-reply-to", "")))
        mail.references = message_ids(str(message.get("references", "")))
    except Exception as exc:
        mail.defects.append(f"FallbackHeaderError: {type(exc).__name__}")
    mail.text = _newlines(_limit(raw.decode("utf-8", "replace"), MAX_TEXT))
    return mail


def _header_date(value: str) -> datetime | None:
    try:
        date = email.utils.parsedate_to_datetime(proper_text(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _aware(date, None)


def _header_index(message: StdMessage) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items() if hasattr(message, "raw_items") else message.items():
        headers.setdefault(str(name).strip().lower(), []).append(_decoded(value))
    return headers


def _decoded(value: Any) -> str:
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:
        text = str(value)
    return clean_header(text)


def _first_msgid(value: str) -> str:
    ids = message_ids(value)
    return ids[0] if ids else ""


def _addresses(pairs: Any) -> list[tuple[str, str]]:
    result = []
    for pair in pairs or []:
        try:
            name, addr = pair
        except (TypeError, ValueError):
            continue
        addr = clean_header(addr).lower()
        if "@" in addr and len(addr) <= 320:
            result.append((clean_header(name)[:200], addr))
    return result


def _aware(value: datetime | None, offset_hours: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # mail-parser gives UTC-normalised naive datetimes
    if not (1970 <= value.year <= 2200):
        return None
    return value.astimezone(UTC)


def _attachment(item: dict[str, Any]) -> ParsedAttachment:
    payload = item.get("payload") or ""
    data: bytes
    if item.get("binary"):
        try:
            data = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            data = payload.encode("utf-8", "replace") if isinstance(payload, str) else bytes(payload)
    elif isinstance(payload, bytes):
        data = payload
    else:
        data = (
            str(payload).encode(item.get("charset") or "utf-8", "replace")
            if _known(item.get("charset"))
            else str(payload).encode("utf-8", "replace")
        )
    disposition = str(item.get("content-disposition") or "").lower()
    return ParsedAttachment(
        filename=safe_filename(item.get("filename") or ""),
        content_type=clean_header(item.get("mail_content_type") or "application/octet-stream")[:255].lower(),
        payload=data,
        content_id=clean_header(item.get("content-id") or "")[:500],
        inline=disposition.startswith("inline"),
    )


def _known(charset: str | None) -> bool:
    if not charset:
        return False
    try:
        "".encode(charset)
    except (LookupError, ValueError):
        return False
    return True


def safe_filename(name: str) -> str:
    """The last path component, without control characters, at most 255 characters.

    It is only ever shown or offered as a download name, never used as a path.
    """
    name = clean_header(name).replace("\\", "/").rsplit("/", 1)[-1].strip(". ")
    return name[:255] or "attachment"


def _limit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def _newlines(text: str) -> str:
    """LF line ends, and no NUL (PostgreSQL text cannot hold one; it means nothing in a mail)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
