"""From, Reply-To, To and Cc read leniently: the address is salvaged from the shapes old mailers and spam write.

The stdlib (``email.utils.getaddresses``, strict since Python 3.13) reads
every well-formed list. When it finds nothing usable, or the value is plainly
broken (unbalanced quotes or angle brackets), each comma-separated piece is
salvaged: an address in angle brackets wins, else the first bare address;
what stands before it is the display name. A trailing dot is dropped, and
encoded words are decoded in the name afterwards (so an encoded comma or
``<`` in a name cannot split or fake an address).

Most values are one of a few plain shapes (``addr``, ``Name <addr>``,
``"Name" <addr>``, lists of them): those are read by one expression
(:func:`_plain`), to the very pairs the stdlib's parser gives, at a tenth of
its cost; anything else goes the long way.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable

from mailgate.mail.headers import decode_words

MAX_ADDRESSES = 1000
_ADDR = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[^@\s<>()\[\],;:\"]{1,255}$")
_ANGLE = re.compile(r"<\s*(?:mailto:)?([^<>\s@]{1,64}@[^<>\s@]{1,255}?)\.?\s*(?:>|$)", re.IGNORECASE)
_BARE = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*", re.UNICODE)
# The plain shapes (RFC 5322 dot-atoms, ASCII only): an address alone, or after a name of atoms or a
# quoted name without escapes or angle brackets. A name's atoms may hold dots, as the stdlib's phrases do.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"  # RFC 5322's atom characters (the SMTP door reads paths with it too)
DOT_ATOM = rf"{ATEXT}+(?:\.{ATEXT}+)*"
_PLAIN_ADDRESS = re.compile(rf"{DOT_ATOM}@{DOT_ATOM}")
_PLAIN_NAMED = re.compile(
    rf"""(?:"([^"\\<>\x00-\x1f\x7f]*)" *|((?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]+ +)+))<({DOT_ATOM}@{DOT_ATOM})>"""
)


def read(values: Iterable[str], hint: str | None = None) -> list[tuple[str, str]]:
    """(display name, lowercased address) for every address in the header values, in order."""
    found: list[tuple[str, str]] = []
    for value in values:
        value = str(value or "")
        pairs = _plain(value)
        if pairs is None:
            pairs = _strict(value) if not _unbalanced(value) else []
        if not pairs:
            pairs = _salvage(value)
        for name, addr in pairs:
            name = _display(decode_words(name, hint))
            if name.lower() == addr:
                name = ""
            found.append((name[:200], addr))
            if len(found) >= MAX_ADDRESSES:
                return found
    return found


def address_of(value: str) -> str:
    """``email.utils.parseaddr(value)[1]``, without its parser for a plain address (most of them)."""
    if _PLAIN_ADDRESS.fullmatch(value):
        return value
    return email.utils.parseaddr(value)[1]


def _plain(value: str) -> list[tuple[str, str]] | None:
    """The pairs of a list of plain shapes, as :func:`_strict` reads them; None for any other value."""
    pairs = []
    for piece in value.split(","):
        piece = piece.strip(" ")
        if _PLAIN_ADDRESS.fullmatch(piece):
            name, addr = "", piece
        else:
            named = _PLAIN_NAMED.fullmatch(piece)
            if named is None:
                return None
            quoted, atoms, addr = named.groups()
            name = quoted if quoted is not None else " ".join(atoms.split())
        address = _address(addr)
        if not address:
            return None
        pairs.append((name, address))
    return pairs


def _strict(value: str) -> list[tuple[str, str]]:
    try:
        pairs = email.utils.getaddresses([value])
    except Exception:  # the stdlib parser is robust, but this is a stranger's header
        return []
    good = [(name, _address(addr)) for name, addr in pairs if _address(addr)]
    lowered = value.lower()
    if len(good) != len([p for p in pairs if any(p)]) or any(addr not in lowered for _, addr in good):
        return []  # the stdlib glued junk words into an address, or dropped one
    return good if len(good) <= len(_pieces(value)) else []  # one piece read as two: an address in the name


def _address(addr: str) -> str:
    addr = addr.strip().strip("<>").rstrip(".").lower()
    return addr if _ADDR.match(addr) and not addr.startswith(".") and "." not in addr[-1:] else ""


def _unbalanced(value: str) -> bool:
    return value.count('"') % 2 == 1 or value.count("<") != value.count(">")


def _salvage(value: str) -> list[tuple[str, str]]:
    pairs = []
    for piece in _pieces(value):
        angle = _ANGLE.search(piece)
        match = angle or _BARE.search(piece)
        if match is None:
            continue
        addr = _address(match.group(1) if angle else match.group(0))
        if not addr:
            continue
        name = piece[: match.start()].strip()
        if not name and not angle:
            name = _comment(piece[match.end() :])
        pairs.append((name, addr))
    return pairs


def _pieces(value: str) -> list[str]:
    """Split at commas that stand between addresses (not inside a quoted name that holds no address)."""
    pieces, current, quoted = [], "", False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char in ",;" and (not quoted or _BARE.search(current)):
            pieces.append(current)
            current, quoted = "", False
            continue
        current += char
    pieces.append(current)
    return [p for p in pieces if "@" in p]


def _comment(rest: str) -> str:
    match = re.search(r"\(([^()]{1,200})\)", rest)
    return match.group(1) if match else ""


def _display(name: str) -> str:
    """A display name without the quotes, brackets and backslashes a broken header leaves around it."""
    name = re.sub(r"\\(.)", r"\1", name)
    return " ".join(name.strip().strip("\"'<> \t").split())
