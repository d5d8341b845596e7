"""Proof that a mail comes from who it says: signed reply addresses and Authentication-Results.

Anyone can write any From. A mail from an agent's address steers a ticket
only when it proves the agent, in one of two ways:

1. **A signed reply address.** Every notification an agent gets carries a
   Reply-To of its own, ``<local>+<ticket>.<mac>@<domain>``, where the mac is
   an HMAC (key from ``[mailgate] secret_file``) over the role, the ticket
   number and that agent's address. Only that agent was ever sent it, so a
   reply to it, From that agent, proves the agent for that ticket. Customers
   get signed reply addresses too (role ``customer``): a reply to one may
   write into the ticket whoever sends it, while a stranger who only guessed
   a ticket number may not.
2. **An Authentication-Results header** (RFC 8601) written by the mail server
   in front of mailgate, whose authserv-id is listed in ``[agent_auth]
   trusted_authserv_ids``, saying ``dkim=pass`` for a signing domain
   (``header.d``) aligned with the From's domain, or ``spf=pass`` for an
   envelope sender (``smtp.mailfrom``) aligned with it. Aligned: the same
   domain, or one a subdomain of the other. Only the headers above the first
   ``Received`` header are read (those our own server put on top); the
   server must also remove such headers arriving from outside (RFC 8601 §5).

All of it is pure: it takes the key, the addresses and the header values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from mailgate.config import Config, Table
from mailgate.mail.headers import header_block_end
from mailgate.mail.parse import clean_header
from mailgate.mail.signing import sign, verify

ROLES = ("agent", "customer")
_SIGNED = re.compile(r"^([^+@\s]+)\+(\d{1,18})\.([a-z2-7]{10})@([^@\s]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class AuthSettings:
    """``[agent_auth]`` in config.toml."""

    trusted_authserv_ids: frozenset[str] = frozenset()
    methods: tuple[str, ...] = ("dkim", "spf")


def parse_settings(config: Config) -> AuthSettings:
    t = Table(config.raw.get("agent_auth"), config.path, "agent_auth")
    ids = frozenset(v.strip().lower() for v in t.str_list("trusted_authserv_ids", []) if v.strip())
    methods = tuple(m.lower() for m in t.str_list("methods", ["dkim", "spf"]))
    for method in methods:
        if method not in ("dkim", "spf"):
            raise t.error("methods", f"expected dkim and/or spf, got {method!r}")
    t.finish()
    return AuthSettings(trusted_authserv_ids=ids, methods=methods)


# --- signed reply addresses --------------------------------------------------------------------


def _signed_text(role: str, number: int, address: str) -> str:
    return f"{role}:{number}:{address.strip().lower()}"


def reply_address(key: bytes, support_address: str, number: int, role: str, address: str) -> str:
    """The reply address only ``address`` is given, for ticket ``number``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    local, _, domain = support_address.rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}+{number}.{sign(key, _signed_text(role, number, address))}@{domain}"


@dataclass(frozen=True)
class SignedAddress:
    number: int
    mac: str
    address: str  # the full address it was found as


def parse_reply_address(address: str) -> SignedAddress | None:
    match = _SIGNED.match(address.strip().strip("<>"))
    if not match:
        return None
    return SignedAddress(number=int(match.group(2)), mac=match.group(3).lower(), address=match.group(0).lower())


def signed_for(key: bytes, signed: SignedAddress, role: str, address: str) -> bool:
    """True when ``signed`` is the reply address ``address`` was given in ``role``."""
    return bool(address) and verify(key, _signed_text(role, signed.number, address), signed.mac)


# --- Authentication-Results --------------------------------------------------------------------


@dataclass(frozen=True)
class MethodResult:
    method: str  # dkim, spf, dmarc …
    result: str  # pass, fail, none …
    props: dict[str, str] = field(default_factory=dict)  # "header.d" -> "example.com"


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str
    results: tuple[MethodResult, ...]


def _strip_comments(value: str) -> str:
    """Remove (comments), which nest, but not inside "quoted strings"."""
    out, depth, quoted, escaped = [], 0, False, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def parse_authentication_results(value: str) -> AuthResults | None:
    """One header value, as RFC 8601 writes it; None when it is not one."""
    parts = [p.strip() for p in _strip_comments(value).split(";")]
    head = parts[0].split()
    if not head:
        return None
    results = []
    for part in parts[1:]:
        tokens = part.split()
        if not tokens or "=" not in tokens[0]:
            continue
        method, _, result = tokens[0].partition("=")
        props = {}
        for token in tokens[1:]:
            name, sep, prop = token.partition("=")
            if sep:
                props[name.lower()] = prop.strip('"').lower()
        results.append(MethodResult(method.split("/")[0].lower(), result.strip('"').lower(), props))
    return AuthResults(authserv_id=head[0].lower(), results=tuple(results))


def top_authentication_results(raw: bytes) -> list[str]:
    """The Authentication-Results values above the first Received header, top first."""
    values = []
    head = raw[: header_block_end(raw)]  # the parser reads a body it is told to skip line by line all the same
    for name, value in BytesHeaderParser(policy=compat32).parsebytes(head, headersonly=True).items():
        lowered = name.lower()
        if lowered == "received":
            break
        if lowered == "authentication-results":
            values.append(clean_header(str(value)))
    return values


def _domain(value: str) -> str:
    return value.strip().strip("<>").rpartition("@")[2].strip(".").lower()


def aligned(signer: str, author: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other (both with a dot)."""
    signer, author = signer.lower().strip("."), author.lower().strip(".")
    if not signer or not author or "." not in signer or "." not in author:
        return False
    return signer == author or author.endswith("." + signer) or signer.endswith("." + author)


def proof_from_headers(values: list[str], from_addr: str, settings: AuthSettings) -> str:
    """ "dkim" or "spf" when a trusted header proves ``from_addr``'s domain, else ""."""
    author = _domain(from_addr)
    for value in values:
        parsed = parse_authentication_results(value)
        if parsed is None or parsed.authserv_id not in settings.trusted_authserv_ids:
            continue
        for item in parsed.results:
            if item.result != "pass" or item.method not in settings.methods:
                continue
            if item.method == "dkim":
                signer = item.props.get("header.d") or _domain(item.props.get("header.i", ""))
            elif item.method == "spf":
                signer = _domain(item.props.get("smtp.mailfrom", ""))
            else:
                continue
            if aligned(signer, author):
                return item.method
    return ""
