"""Turn raw bytes into a ParsedMail, as well as the bytes can be read.

The stdlib's ``email`` package (compat32) splits the MIME tree (fed a slice at a
time, long runs of base64 lines as one token each: ``mail.tree``); the modules in
:mod:`mailgate.mail` read what real clients put in it: charsets through the
WHATWG supersets and a detector (``mail.charsets``), encoded words anywhere
and broken header blocks (``mail.headers``), malformed address lists
(``mail.addresses``), TNEF, uuencode, AppleDouble and attached messages
(``mail.containers``), signed and encrypted mail (``mail.signed``), and the
human/automatic classification (``mail.automatic``). Around that we add what a
helpdesk needs: addresses lowercased, Message-IDs normalised for lookups, HTML
sanitised once (mailgate.mail.sanitize), a text version when only HTML was sent
(or the text part is empty), attachment payloads as bytes, and a fallback
parse that never raises, so a mail that defeats the parser is still stored
(its raw bytes are always kept as a blob). No text that leaves here holds a
surrogate escape.
"""

from __future__ import annotations

import email.utils
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message as StdMessage
from typing import Any

from mailgate.mail import addresses, automatic, charsets, containers, headers, signed, tree
from mailgate.mail.parsed import ParsedAttachment, ParsedMail
from mailgate.mail.sanitize import MAX_HTML, SAFE_ATTRIBUTES, SAFE_PROTOCOLS, SAFE_TAGS, html_to_text, sanitize

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
MAX_PARTS = 5_000
_MSGID = re.compile(r"<[^<>\s]{1,1000}>")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_ESCAPED_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ID_HEADERS = frozenset({"message-id", "in-reply-to", "references"})


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
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value.strip()  # nothing to replace or drop: most header values, and every header name
    text = proper_text(value if isinstance(value, str) else str(value or ""))
    return _CONTROL.sub("", text.replace("\r", " ").replace("\n", " ")).strip()


def parse(raw: bytes) -> ParsedMail:
    """Parse a mail; never raises. Problems end up in ``ParsedMail.defects``."""
    fixed, notes = headers.repair(raw)
    try:
        mail = _read(fixed)
    except Exception as exc:
        log.warning("the MIME parse failed (%s: %s); using the fallback parser", type(exc).__name__, exc)
        mail = _parse_fallback(fixed)
        mail.defects.append(f"ParserError: {type(exc).__name__}: {str(exc)[:200]}")
    mail.defects[:0] = notes
    mail.size = len(raw)
    return mail


@dataclass
class _Walk:
    """What the walk over the MIME tree collects."""

    hint: str | None
    inside: bool = False  # walking an attached message: its own attached messages are not copied again
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    decisions: list[dict[str, str]] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    part_types: list[str] = field(default_factory=list)
    encrypted: bool = False
    count: int = 0


def _read(raw: bytes) -> ParsedMail:
    message = tree.read(raw, elide=True)
    hint = _body_charset(message) if not raw[: raw.find(b"\n\n") if b"\n\n" in raw else 65536].isascii() else None
    mail = ParsedMail()
    _read_headers(mail, message, hint)
    walk = _Walk(hint=hint)
    _walk(message, walk)
    mail.html, notes = sanitize("\n".join(walk.htmls))
    mail.defects.extend(notes)
    text = _newlines(_limit("\n".join(walk.texts), MAX_TEXT))
    mail.text = text if text.strip() else html_to_text(mail.html)
    if walk.encrypted:
        mail.encrypted = True
        mail.defects.append(signed.ENCRYPTED_NOTE)
        mail.text = mail.text if mail.text.strip() else f"[{signed.ENCRYPTED_NOTE}]"
    if len(walk.attachments) > MAX_ATTACHMENTS:
        mail.defects.append(
            f"TooManyAttachments: only the first {MAX_ATTACHMENTS} are stored apart; the raw message keeps them all"
        )
    mail.attachments = walk.attachments[:MAX_ATTACHMENTS]
    mail.charsets = walk.decisions[:50]
    mail.defects.extend(dict.fromkeys(walk.defects))
    found = automatic.classify(mail.header, walk.part_types, mail.from_addr)
    mail.kind, mail.kind_reason = found.kind, found.reason
    return mail


def _body_charset(message: StdMessage) -> str | None:
    """The charset of the first text part: old clients wrote their 8-bit headers in it too."""
    for index, part in enumerate(message.walk()):
        if index > 50:
            break
        if part.get_content_maintype() == "text" and part.get_param("charset"):
            return str(part.get_param("charset"))
    return None


def _read_headers(mail: ParsedMail, message: StdMessage, hint: str | None) -> None:
    mail.headers = _header_index(message, hint)
    mail.subject = mail.header("subject")[:2000]

    def people(name: str) -> list[tuple[str, str]]:
        # raw_items: compat32's get_all turns 8-bit bytes into a Header that has lost them
        raw = [v for k, v in message.raw_items() if k.strip().lower() == name]
        values = [charsets.header_bytes_text(_FOLD.sub("", str(v)), hint) for v in raw]
        return [(clean_header(n)[:200], clean_header(a)) for n, a in addresses.read(values, hint)]

    senders = people("from")
    if senders:
        mail.from_name, mail.from_addr = senders[0]
    mail.to = [a for _, a in people("to")]
    mail.cc = [a for _, a in people("cc")]
    mail.reply_to = [a for _, a in people("reply-to")]
    mail.date = _header_date(mail.header("date"))
    mail.message_id = _first_msgid(mail.header("message-id"))
    mail.in_reply_to = message_ids(" ".join(mail.headers.get("in-reply-to", [])))
    mail.references = message_ids(" ".join(mail.headers.get("references", [])))


def _walk(part: StdMessage, walk: _Walk, depth: int = 0) -> None:
    walk.count += 1
    if walk.count > MAX_PARTS:
        if walk.count == MAX_PARTS + 1:
            walk.defects.append(f"TooManyParts: only the first {MAX_PARTS} MIME parts were read")
        return
    ctype = part.get_content_type()
    walk.part_types.append(ctype)
    walk.defects.extend(type(d).__name__ for d in part.defects)
    if signed.is_encrypted(part):
        walk.encrypted = True
        for leaf in _leaves(part):
            if leaf.get_content_type() != "application/pgp-encrypted":
                _keep(leaf, walk)
        return
    if ctype == "multipart/signed":
        content, signatures = signed.signed_parts(part)
        for child in content:
            _walk(child, walk, depth + 1)
        for signature in signatures:
            _keep(signature, walk, signed.SIGNATURE_TYPES.get(signature.get_content_type(), ""))
        return
    if ctype == "message/rfc822":
        _attached_message(part, walk)
        return
    if part.is_multipart():
        children: Any = (
            containers.appledouble_data_fork(part) if ctype == "multipart/appledouble" else part.get_payload()
        )
        for child in children if isinstance(children, list) else []:
            _walk(child, walk, depth + 1)
        return
    _leaf(part, ctype, walk)


def _leaves(part: StdMessage) -> list[StdMessage]:
    payload = part.get_payload()
    if not (part.is_multipart() and isinstance(payload, list)):
        return [part]
    return [c for c in payload if isinstance(c, StdMessage)]


def _leaf(part: StdMessage, ctype: str, walk: _Walk) -> None:
    name = containers.part_name(part, walk.hint)
    if ctype.startswith("multipart/"):  # a multipart whose boundary never came: its body is text
        ctype, name = "text/plain", ""
    body = ctype in ("text/plain", "text/html") and part.get_content_disposition() != "attachment" and not name
    if body:
        declared = part.get_param("charset")
        label = declared if isinstance(declared, str) and declared else None
        text, decision = charsets.decode(tree.payload(part), label)
        walk.decisions.append({"part": str(len(walk.part_types)), "type": ctype, **decision.as_dict()})
        if ctype == "text/html":
            walk.htmls.append(text)
        elif signed.is_inline_pgp_message(text):
            walk.encrypted = True
            walk.texts.append(text)
        else:
            text, files = containers.uudecode(text)
            walk.texts.append(text)
            walk.attachments += [ParsedAttachment(safe_filename(f.filename), f.content_type, f.payload) for f in files]
        return
    if containers.is_tnef(ctype, name):
        inside = containers.tnef_files(tree.payload(part))
        if inside is not None and (inside[0] or inside[1] or inside[2]):
            files, text, html = inside
            walk.attachments += [ParsedAttachment(safe_filename(f.filename), f.content_type, f.payload) for f in files]
            if text.strip():
                walk.texts.append(text)
            elif html:
                walk.htmls.append(html)
            return
    _keep(part, walk, name)


def _keep(part: StdMessage, walk: _Walk, name: str = "") -> None:
    """The part as an attachment, named by the client or else by a stable fallback."""
    name = name or containers.part_name(part, walk.hint) or containers.fallback_name(part, len(walk.part_types))
    walk.attachments.append(
        ParsedAttachment(
            filename=safe_filename(name),
            content_type=clean_header(part.get_content_type())[:255].lower(),
            payload=tree.payload(part),
            content_id=clean_header(str(part.get("content-id", "")))[:500],
            inline=part.get_content_disposition() == "inline",
        )
    )


def _attached_message(part: StdMessage, walk: _Walk) -> None:
    """An attached message is kept whole; the files inside it are listed as belonging to it."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], StdMessage) else None
    if inner is None:
        _keep(part, walk)
        return
    if walk.inside:  # a message inside an attached message: the outer copy holds it; list its files only
        _walk(inner, walk)
        return
    tree.restore(inner)  # it is written out again: with its runs, not their tokens
    try:
        data = inner.as_bytes()
    except Exception:  # an inner header the generator cannot write back: its text, bytes kept as read
        data = inner.as_string().encode("utf-8", "surrogateescape")
    subject = clean_header(headers.header_text(str(inner.get("subject", "")), walk.hint))
    name = containers.part_name(part, walk.hint) or (f"{subject[:200]}.eml" if subject else "message.eml")
    walk.attachments.append(
        ParsedAttachment(
            safe_filename(name), "message/rfc822", data, content_id=clean_header(str(part.get("content-id", "")))[:500]
        )
    )
    owner = walk.attachments[-1].filename
    inside = _Walk(hint=walk.hint, inside=True, count=walk.count)
    _walk(inner, inside)
    walk.count = inside.count
    for item in inside.attachments:
        item.part_of = item.part_of or owner
        walk.attachments.append(item)


def _parse_fallback(raw: bytes) -> ParsedMail:
    """The top-level header block alone (the stdlib compat32 header parser), with every access guarded.

    Only the headers are parsed: a body deep enough to defeat the MIME parse defeats any
    parse that recurses per MIME level, but the From, To, Subject, Date and Message-ID of
    such a mail are still plain header lines that a helpdesk needs beside the raw blob.
    """
    mail = ParsedMail()
    try:
        message = tree.read(raw, headers_only=True)
        _read_headers(mail, message, None)
    except Exception as exc:
        mail.defects.append(f"FallbackHeaderError: {type(exc).__name__}")
    body = raw.split(b"\n\n", 1)[-1] if b"\n\n" in raw else raw
    mail.text = _newlines(_limit(charsets.decode(body[:MAX_TEXT], None)[0], MAX_TEXT))
    return mail


def _header_date(value: str) -> datetime | None:
    try:
        date = email.utils.parsedate_to_datetime(proper_text(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _aware(date)


def _header_index(message: StdMessage, hint: str | None) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name, value in message.raw_items() if hasattr(message, "raw_items") else message.items():
        key = clean_header(str(name)).lower()
        value = _FOLD.sub("", str(value))
        # Identifiers are keys, read the same way in a mail and in the reply that names them (RFC 6532).
        text = proper_text(value) if key in _ID_HEADERS else headers.header_text(value, hint)
        index.setdefault(key, []).append(clean_header(text))
    return index


def _first_msgid(value: str) -> str:
    ids = message_ids(value)
    return ids[0] if ids else ""


def _aware(value: datetime | None) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # no zone given (RFC 5322 -0000): read as UTC
    if not (1970 <= value.year <= 2200):
        return None
    return value.astimezone(UTC)


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
