"""When two mails with one Message-ID are the same mail: the content digest.

A Message-ID is chosen by the sender, and a stranger can choose one we are
about to see (predictable, or read in a Cc). So a known Message-ID alone no
longer makes a mail a duplicate: it must also have the same author and the
same content, which :func:`content_digest` condenses into a sha256.

The digest covers the body and every header except the ones a mail collects
on its way, which differ between two deliveries of one mail (to two of our
addresses, through another relay, or fetched again over IMAP):

- trace headers: ``Received``, ``Received-SPF``, ``Return-Path``,
  ``Delivered-To``, ``Authentication-Results``, ``ARC-*``, ``DKIM-Signature``
  (a forwarder may sign again);
- every ``X-*`` header: receivers add their own (``X-Original-To``,
  ``X-Spam-*``, ``X-Virus-Scanned``, ``X-Gm-*``, ``X-MS-Exchange-*``) and a
  sender's ``X-Mailer`` says nothing From, Subject and body do not already;
- ``Status``, ``Content-Length`` and ``Lines``, which mailbox tools add.

Line endings are made LF first (SMTP gives CRLF, a pipe from the MTA LF),
header names are lowercased and folded values unfolded, so the digest is
deterministic for one mail whichever door it came in by.
"""

from __future__ import annotations

import hashlib
import re

_TRACE = frozenset(
    {
        "received",
        "received-spf",
        "return-path",
        "delivered-to",
        "authentication-results",
        "dkim-signature",
        "status",
        "content-length",
        "lines",
    }
)
_TRACE_PREFIXES = ("arc-", "x-")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CHUNK = 1 << 20


def is_trace_header(name: str) -> bool:
    """A header the digest leaves out: it differs between deliveries of one mail."""
    name = name.strip().lower()
    return name in _TRACE or name.startswith(_TRACE_PREFIXES)


def content_digest(raw: bytes) -> str:
    """sha256 of the headers that are not trace headers and of the body, line endings normalised."""
    end = _HEADER_END.search(raw)
    head, body_start = (raw[: end.start()], end.end()) if end else (raw, len(raw))
    digest = hashlib.sha256()
    for name, value in _fields(head):
        if not is_trace_header(name):
            digest.update(name.lower().encode("ascii", "replace") + b":" + value + b"\n")
    digest.update(b"\n")
    carry = b""
    for offset in range(body_start, len(raw), _CHUNK):  # big mails: no second copy of the body
        chunk = carry + bytes(raw[offset : offset + _CHUNK])
        carry = b"\r" if chunk.endswith(b"\r") else b""
        digest.update((chunk[:-1] if carry else chunk).replace(b"\r\n", b"\n"))
    digest.update(carry)
    return digest.hexdigest()


def _fields(head: bytes) -> list[tuple[str, bytes]]:
    """The header fields in order: (name, unfolded value with whitespace runs made one space)."""
    fields: list[tuple[str, list[bytes]]] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.decode("ascii", "replace").strip(), [value]))
    return [(name, b" ".join(b" ".join(parts).split())) for name, parts in fields]


def dedupe_key(message_id: str, raw_sha256: str, author: str = "", digest: str = "") -> str:
    """One key per mail: its Message-ID with its author and content digest, or its bytes when it has none.

    Without ``digest`` it is the key of earlier versions, the Message-ID alone
    (rows stored before the digest existed carry it).
    """
    if not message_id:
        return raw_sha256
    text = f"mid:{message_id}" if not digest else f"mid:{message_id}\0{author}\0{digest}"
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
