"""The one check a door makes before spooling: is this a mail at all?

Kept tiny and free of heavy imports: the SMTP handler and `mailgate ingest`
both call it, and ingest runs once per mail from an MTA.
"""

from __future__ import annotations

import re

# A header field: a name of printable ASCII without colon or space, then a colon.
_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
# A banner some mailers and exports write above the headers (the parser skips it: mailgate.mail.headers).
_BANNER = re.compile(rb"^[ \t]*[-=_*~#]{2,}[^\r\n:]{0,200}[-=_*~#]{2,}[ \t]*\r?\n")


def looks_like_mail(raw: bytes) -> bool:
    """True when ``raw`` starts with at least one header field.

    Anything else (empty input, a bare text, binary garbage) is refused with a
    permanent error: storing it would give a ticket with no sender, no subject
    and nothing to answer. A mail with broken MIME, charsets or encodings is
    still a mail and is stored as well as it can be read.
    """
    start = raw[:4096].lstrip(b"\r\n")
    if start.startswith(b"From ") and b"\n" in start:  # an mbox "From " line
        start = start.split(b"\n", 1)[1]
    if _BANNER.match(start) and b"\n" in start:  # "---- Original email message ----" above the headers
        start = start.split(b"\n", 1)[1]
    return bool(_HEADER_LINE.match(start))
