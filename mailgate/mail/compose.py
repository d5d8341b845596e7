"""Build the RFC 5322 bytes of a mail we send.

The standard library's ``email`` package does the MIME work. What this
module adds is what keeps a helpdesk mail safe and threaded:

- every header value goes through :func:`mailgate.mail.parse.clean_header`, so a
  customer's subject with CR/LF can never add a header to our mail;
- our own Message-ID, at ``[mailgate] hostname``;
- In-Reply-To and References that continue the customer's thread (References
  trimmed to the first and the latest ids, so a long thread cannot grow a
  header without bound);
- ``Auto-Submitted`` (RFC 3834) on automatic mail, ``X-Auto-Response-Suppress``
  so that Exchange sends no out-of-office back to it, and ``X-Loop`` naming the
  support address on everything we send.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import encoders, policy
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr, quote
from typing import Any

from mailgate.mail.parse import clean_header, message_ids

MAX_REFERENCES = 20
_PLAIN_VALUE = re.compile(r"[\x20-\x7e]*")


class _Wire(policy.Compat32):
    """compat32 with CRLF, and a short printable-ASCII header written as it is.

    Folding such a header changes nothing (it fits in 78 characters and needs no encoded words), but
    the classic folder builds a Header object for it all the same: most of a mail's headers.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, EncodedWords):
            return value.folded(name, self.linesep).encode("ascii")
        if isinstance(value, str) and len(name) + len(value) + 2 <= 78 and _PLAIN_VALUE.fullmatch(value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


class EncodedWords(str):
    """A header's text as RFC 2047 encoded words (UTF-8, base64), sized to fold into 78-character lines.

    The classic ``Header`` gets there by measuring every character in both encodings, a tenth of an
    acknowledgment with a subject outside ASCII. Here a word takes whole characters up to 45 bytes
    (60 of base64, a word of 72: RFC 2047 allows 75); the first word leaves room for the header's name.
    The words are separated by single spaces, which a reader drops between two encoded words.
    """

    def __new__(cls, text: str, name: str) -> EncodedWords:
        data = text.encode("utf-8", "replace")
        words, start, limit = [], 0, max(3, (78 - len(name) - 2 - len(_WORD_START) - 2) // 4 * 3)
        while start < len(data):
            end = back = min(start + limit, len(data))
            while start < back < len(data) and data[back] & 0xC0 == 0x80:
                back -= 1  # never inside a character: its continuation bytes are 10xxxxxx
            while back == start and end < len(data) and data[end] & 0xC0 == 0x80:
                end += 1  # a character wider than the room: the word takes it whole
            end = back if back > start else end
            words.append(f"{_WORD_START}{base64.b64encode(data[start:end]).decode('ascii')}?=")
            start, limit = end, _WORD_BYTES
        return super().__new__(cls, " ".join(words))

    def folded(self, name: str, linesep: str) -> str:
        """One word a line: each fits with the name or the folding space (see ``__new__``)."""
        return f"{name}: " + f"{linesep} ".join(self.split(" ")) + linesep


_WORD_START = "=?utf-8?b?"
_WORD_BYTES = 45


_WIRE = _Wire(linesep="\r\n", mangle_from_=False)
_SAFE_MSGID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")  # printable ASCII, no < or > inside


@dataclass(frozen=True)
class OutAttachment:
    """A file a mail carries: the stored bytes, under their name and type.

    ``inline`` parts with a ``content_id`` sit beside the HTML in a
    multipart/related (the HTML shows them as ``cid:<content_id>``); the rest
    are attachments of the mail.
    """

    filename: str
    content_type: str
    data: bytes
    content_id: str = ""
    inline: bool = False


@dataclass(frozen=True)
class Outgoing:
    """Everything a mail we send says, before it becomes bytes."""

    from_addr: str
    to: Sequence[tuple[str, str]]  # (display name, address)
    subject: str
    text: str
    date: datetime
    message_id: str
    from_name: str = ""
    html: str = ""
    in_reply_to: str = ""
    references: Sequence[str] = field(default_factory=tuple)
    reply_to: str = ""
    auto_submitted: str = ""  # "auto-replied", "auto-generated", or "" for mail a person wrote
    loop_marker: str = ""  # the X-Loop value: our support address
    cc: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (display name, address), visible like To
    attachments: Sequence[OutAttachment] = field(default_factory=tuple)
    reply_to_name: str = ""  # the display name of Reply-To, so a client shows who the correspondent is


def new_message_id(hostname: str) -> str:
    """A Message-ID of ours: unique, and at our own host name."""
    host = re.sub(r"[^A-Za-z0-9.-]", "", hostname) or "localhost"
    return f"<{uuid.uuid4().hex}@{host}>"


def safe_message_ids(values: Sequence[str]) -> list[str]:
    """Only well-formed ids survive into our headers."""
    return [v for v in values if _SAFE_MSGID.match(v)]


def thread_headers(parent_message_id: str, parent_references: str | Sequence[str]) -> tuple[str, list[str]]:
    """In-Reply-To and References for an answer to the given message (RFC 5322 3.6.4)."""
    refs = message_ids(parent_references) if isinstance(parent_references, str) else list(parent_references)
    parent = safe_message_ids([parent_message_id])
    chain = list(dict.fromkeys(safe_message_ids(refs) + parent))
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1) :]
    return (parent[0] if parent else ""), chain


def checked(name: str, addr: str) -> tuple[str, str]:
    """A display name and address fit for a header; raises ValueError when ``addr`` is not usable."""
    addr = clean_header(addr).strip("<>")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c in addr for c in ' ,;<>"()[]\\'):
        raise ValueError(f"not a usable mail address: {addr!r}")
    return clean_header(name)[:200], addr


def needs_smtputf8(*addresses: str) -> bool:
    return any(not a.isascii() for a in addresses)


def compose(mail: Outgoing) -> bytes:
    """The bytes to hand to the smarthost (CRLF line ends). Raises ValueError on an unusable address.

    Built with the classic (compat32) classes, a few times faster than ``policy.default``
    (this runs once per automatic mail, inside the pipeline's transaction); every value is
    cleaned or checked above, and names and subjects outside ASCII become RFC 2047 words.
    Addresses outside ASCII need SMTPUTF8 and take the ``policy.SMTPUTF8`` path.
    """
    to = [checked(name, addr) for name, addr in mail.to]
    cc = [checked(name, addr) for name, addr in mail.cc]
    sender = checked(mail.from_name, mail.from_addr)
    reply_to = checked(mail.reply_to_name, mail.reply_to) if mail.reply_to else None
    if needs_smtputf8(sender[1], *(addr for _, addr in to + cc), reply_to[1] if reply_to else ""):
        return _compose_smtputf8(mail, sender, to, reply_to, cc)
    return flat(tree(mail, sender, to, cc, reply_to))


def tree(
    mail: Outgoing,
    sender: tuple[str, str],
    to: list[tuple[str, str]],
    cc: list[tuple[str, str]],
    reply_to: tuple[str, str] | None,
) -> Message:
    """The classic MIME tree of an ASCII-addressed mail, its headers in the order they are written."""
    body = _body(mail)
    content = list(body.items())
    for name in {n for n, _ in content}:
        del body[name]
    subject = clean_header(mail.subject)[:900]
    body["From"] = formataddr(sender, charset="utf-8")
    body["To"] = ", ".join(formataddr(pair, charset="utf-8") for pair in to)
    if cc:
        body["Cc"] = ", ".join(formataddr(pair, charset="utf-8") for pair in cc)
    body["Subject"] = subject if subject.isascii() else EncodedWords(subject, "Subject")
    for name, value in _plain_headers(mail, reply_to):
        body[name] = value
    for name, value in content:
        body[name] = value
    return body


_NEWLINES = re.compile(r"\r\n|\r|\n")


def flat(message: Message) -> bytes:
    """``message.as_bytes(policy=_WIRE)`` for the trees :func:`compose` builds, byte for byte.

    The generator is a third of making an acknowledgment: a buffer and a clone of itself for each part,
    a call for each line. Our trees hold only headers, text payloads (already 7-bit: base64, QP or plain
    ASCII) and multiparts with a boundary: they are written here the way it writes them. Any other part
    goes to the generator.
    """
    out: list[str] = []
    if not _flat_into(message, out):
        return message.as_bytes(policy=_WIRE)
    return "".join(out).encode("ascii")


def _flat_into(part: Message, out: list[str]) -> bool:
    maintype = part.get_content_maintype()
    if part.preamble is not None or part.epilogue is not None or maintype == "message":
        return False
    if part.get_content_type() == "multipart/signed":  # the generator writes its parts unfolded
        return False
    for name, value in part.raw_items():
        out.append(_WIRE.fold_binary(name, value).decode("ascii"))
    out.append("\r\n")
    payload = part._payload  # type: ignore[attr-defined]
    if isinstance(payload, list):
        boundary = part.get_boundary()
        if not boundary or not payload or not all(isinstance(child, Message) for child in payload):
            return False
        for index, child in enumerate(payload):
            out.append(("" if index == 0 else "\r\n") + f"--{boundary}\r\n")
            if not _flat_into(child, out):
                return False
        out.append(f"\r\n--{boundary}--\r\n")
        return True
    if not isinstance(payload, str) or not payload.isascii():
        return False
    lines = _NEWLINES.split(payload)
    out.append("\r\n".join(lines))
    return True


def _plain_headers(mail: Outgoing, reply_to: tuple[str, str] | None) -> list[tuple[str, str]]:
    """The ASCII-only headers after From, To and Subject."""
    headers = [("Date", format_datetime(mail.date)), ("Message-ID", mail.message_id)]
    if mail.in_reply_to:
        headers.append(("In-Reply-To", mail.in_reply_to))
    references = safe_message_ids(list(mail.references))
    if references:
        headers.append(("References", " ".join(references)))
    if reply_to:
        address = formataddr(reply_to, charset="utf-8") if reply_to[1].isascii() else _utf8_address(reply_to)
        headers.append(("Reply-To", address))
    if mail.auto_submitted:
        headers += [("Auto-Submitted", clean_header(mail.auto_submitted)), ("X-Auto-Response-Suppress", "All")]
    if mail.loop_marker:
        headers.append(("X-Loop", clean_header(mail.loop_marker)))
    return headers


def _body(mail: Outgoing) -> Message:
    """The MIME tree: text, or text and HTML as alternatives (the HTML in a related part with its inline
    images), inside a multipart/mixed with the attachments when there are any."""
    inline = [a for a in mail.attachments if a.inline and a.content_id and mail.html]
    files = [a for a in mail.attachments if a not in inline]
    body: Message = _text_part(mail.text, "plain")
    if mail.html:
        html: Message = _text_part(mail.html, "html")
        if inline:
            html = _multipart("related", [html, *(_file_part(a) for a in inline)], mail)
        body = _multipart("alternative", [body, html], mail)
    if files:
        body = _multipart("mixed", [body, *(_file_part(a) for a in files)], mail)
    return body


def _multipart(subtype: str, parts: Sequence[Message], mail: Outgoing) -> MIMEMultipart:
    container = MIMEMultipart(subtype, boundary=_boundary(mail))
    for part in parts:
        del part["MIME-Version"]  # once, at the top of the mail
        container.attach(part)
    return container


def _boundary(mail: Outgoing) -> str:
    """A boundary no part can contain, chosen here so the generator need not search every part for one.

    Base64 has no ``_`` and quoted-printable writes ``=`` as ``=3D``; only a 7-bit text part could hold
    it, and it is looked for there.
    """
    while True:
        boundary = f"=_{uuid.uuid4().hex[:24]}"  # short enough that its Content-Type needs no folding
        if boundary not in mail.text and boundary not in mail.html:
            return boundary


def _file_part(item: OutAttachment) -> MIMEBase:
    """One file in base64 (7-bit clean), its name in RFC 2231 form when it is not ASCII."""
    maintype, _, subtype = (item.content_type or "application/octet-stream").partition("/")
    part = MIMEBase(maintype or "application", subtype or "octet-stream")
    part.set_payload(item.data)
    encoders.encode_base64(part)
    name = clean_header(item.filename)[:200] or "attachment"
    filename: str | tuple[str, str, str] = name if name.isascii() else ("utf-8", "", name)
    part.add_header("Content-Disposition", "inline" if item.inline else "attachment", filename=filename)
    if item.content_id:
        part["Content-ID"] = f"<{clean_header(item.content_id).strip('<>')[:250]}>"
    return part


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    """7bit when it is plain ASCII in short lines, else UTF-8 in quoted-printable: 7-bit clean either way."""
    if text.isascii() and all(len(line) <= 998 for line in text.splitlines()):
        part = MIMENonMultipart("text", subtype)
        part.set_payload(text, "us-ascii")
        return part
    # binascii's encoder, not the email package's, which is Python a character at a time (same rules:
    # soft breaks at 76, "=", 8-bit bytes and trailing blanks escaped; a lone "." line too)
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part["Content-Transfer-Encoding"] = "quoted-printable"
    lines = "\n".join(_NEWLINES.split(text))  # any line end is one, as the email package reads them
    part.set_payload(binascii.b2a_qp(lines.encode("utf-8"), istext=True).decode("ascii"))
    return part


def _compose_smtputf8(
    mail: Outgoing,
    sender: tuple[str, str],
    to: list[tuple[str, str]],
    reply_to: tuple[str, str] | None,
    cc: list[tuple[str, str]],
) -> bytes:
    msg = EmailMessage(policy=policy.SMTPUTF8)
    msg["From"] = _utf8_address(sender)  # strings: Address() and formataddr() refuse a local part outside ASCII
    msg["To"] = ", ".join(_utf8_address(pair) for pair in to)
    if cc:
        msg["Cc"] = ", ".join(_utf8_address(pair) for pair in cc)
    msg["Subject"] = clean_header(mail.subject)[:900]
    for name, value in _plain_headers(mail, reply_to):
        msg[name] = value
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    for item in mail.attachments:
        maintype, _, subtype = (item.content_type or "application/octet-stream").partition("/")
        kwargs: dict[str, Any] = {"cid": f"<{item.content_id.strip('<>')}>"} if item.content_id else {}
        msg.add_attachment(
            item.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=clean_header(item.filename)[:200] or "attachment",
            **kwargs,
        )
    for part in list(msg.walk())[1:]:  # add_alternative gives the new part a MIME-Version of its own
        del part["MIME-Version"]
    return msg.as_bytes()


def _utf8_address(pair: tuple[str, str]) -> str:
    name, addr = pair
    return f'"{quote(name)}" <{addr}>' if name else addr
