"""Build the RFC 5322 bytes of a mail we send.

The standard library's ``email`` package with ``email.policy.SMTP`` does the
MIME work: composing happens once per outgoing mail, far off the hot path.
What this module adds is what keeps a helpdesk mail safe and threaded:

- every header value goes through :func:`mailgate.parsing.clean_header`, so a
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

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mailgate.parsing import clean_header, message_ids

MAX_REFERENCES = 20
_SAFE_MSGID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>$")  # printable ASCII, no < or > inside


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
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return (parent[0] if parent else ""), chain


def address(name: str, addr: str) -> Address:
    """A header address; raises ValueError when ``addr`` is not a usable mail address."""
    addr = clean_header(addr).strip("<>")
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c in addr for c in ' ,;<>"()[]\\'):
        raise ValueError(f"not a usable mail address: {addr!r}")
    return Address(display_name=clean_header(name)[:200], addr_spec=addr)


def needs_smtputf8(*addresses: str) -> bool:
    return any(not a.isascii() for a in addresses)


def compose(mail: Outgoing) -> bytes:
    """The bytes to hand to the smarthost (CRLF line ends). Raises ValueError on an unusable address."""
    recipients = [address(name, addr) for name, addr in mail.to]
    sender = address(mail.from_name, mail.from_addr)
    utf8 = needs_smtputf8(mail.from_addr, mail.reply_to, *(addr for _, addr in mail.to))
    # 7-bit clean unless the addresses need SMTPUTF8 anyway: no smarthost has to convert 8-bit bodies.
    msg = EmailMessage(policy=policy.SMTPUTF8 if utf8 else policy.SMTP.clone(cte_type="7bit"))
    msg["From"] = sender
    msg["To"] = recipients
    msg["Subject"] = clean_header(mail.subject)[:900]
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = mail.message_id
    if mail.in_reply_to:
        msg["In-Reply-To"] = mail.in_reply_to
    references = safe_message_ids(list(mail.references))
    if references:
        msg["References"] = " ".join(references)
    if mail.reply_to:
        msg["Reply-To"] = address("", mail.reply_to)
    if mail.auto_submitted:
        msg["Auto-Submitted"] = clean_header(mail.auto_submitted)
        msg["X-Auto-Response-Suppress"] = "All"
    if mail.loop_marker:
        msg["X-Loop"] = clean_header(mail.loop_marker)
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    return msg.as_bytes()
