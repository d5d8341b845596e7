"""Turn raw bytes into a ParsedMail, as well as the bytes can be read.

mail-parser does the MIME walking and the decoding of headers, charsets and
transfer encodings. Around it we add what a helpdesk needs: addresses
lowercased, Message-IDs normalised for lookups, HTML sanitised with bleach,
a text version when only HTML was sent, attachment payloads as bytes with a
sniffed type, and a fallback parse that never raises, so a mail that defeats
the parser is still stored (its raw bytes are always kept as a blob).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.utils
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message as StdMessage
from typing import Any

import bleach

log = logging.getLogger("mailgate.parsing")

MAX_ATTACHMENTS = 500
MAX_HTML = 2_000_000
MAX_TEXT = 5_000_000
_MSGID = re.compile(r"<[^<>\s]{1,1000}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SAFE_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "div", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
})
SAFE_ATTRIBUTES = {"a": ["href", "title"], "img": ["src", "alt", "width", "height"], "td": ["colspan", "rowspan"],
                   "th": ["colspan", "rowspan"], "*": ["dir", "lang"]}
SAFE_PROTOCOLS = frozenset({"http", "https", "mailto", "cid"})


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
    """Every ``<id>`` in a Message-ID, In-Reply-To or References value, in order."""
    if not value:
        return []
    return _MSGID.findall(value)


def clean_header(value: Any) -> str:
    """One line of printable text: header values never carry CR, LF or NUL onward."""
    text = value if isinstance(value, str) else str(value or "")
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
    mail.html = sanitize_html("\n".join(parsed.text_html))
    mail.text = _newlines(_limit("\n".join(parsed.text_plain), MAX_TEXT)) or html_to_text(mail.html)
    for index, item in enumerate(parsed.attachments):
        if index >= MAX_ATTACHMENTS:
            mail.defects.append(f"TooManyAttachments: only the first {MAX_ATTACHMENTS} are stored apart; "
                                "the raw message keeps them all")
            break
        mail.attachments.append(_attachment(item))
    for defect in parsed.defects:
        mail.defects.append(clean_header(defect)[:500])
    return mail


def _parse_fallback(raw: bytes) -> ParsedMail:
    """The stdlib (compat32) parser with every access guarded."""
    mail = ParsedMail()
    try:
        message = email.message_from_bytes(raw)
        mail.headers = _header_index(message)
        mail.subject = _decoded(message.get("subject", ""))[:2000]
        name, addr = email.utils.parseaddr(_decoded(message.get("from", "")))
        mail.from_name, mail.from_addr = clean_header(name), clean_header(addr).lower()
        mail.message_id = _first_msgid(str(message.get("message-id", "")))
        mail.in_reply_to = message_ids(str(message.get("in-reply-to", "")))
        mail.references = message_ids(str(message.get("references", "")))
    except Exception as exc:
        mail.defects.append(f"FallbackHeaderError: {type(exc).__name__}")
    mail.text = _newlines(_limit(raw.decode("utf-8", "replace"), MAX_TEXT))
    return mail


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
        data = str(payload).encode(item.get("charset") or "utf-8", "replace") if _known(item.get("charset")) \
            else str(payload).encode("utf-8", "replace")
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


def sanitize_html(html: str) -> str:
    if not html.strip():
        return ""
    html = _limit(html, MAX_HTML).replace("\x00", "\ufffd")
    return bleach.clean(html, tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, protocols=SAFE_PROTOCOLS,
                        strip=True, strip_comments=True)


def html_to_text(html: str) -> str:
    if not html:
        return ""
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", html)
    text = bleach.clean(text, tags=set(), strip=True)
    return re.sub(r"\n{3,}", "\n\n", text.replace("&nbsp;", " ").replace("&amp;", "&")
                  .replace("&lt;", "<").replace("&gt;", ">")).strip()


def _limit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def _newlines(text: str) -> str:
    """LF line ends, and no NUL (PostgreSQL text cannot hold one; it means nothing in a mail)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
