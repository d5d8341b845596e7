"""Short HMAC signatures for addresses we hand out (VERP bounces, signed reply addresses).

A signature is 10 base32 characters of HMAC-SHA256 (50 bits): enough that
guessing one by mail is hopeless, short enough for a local part.

The key is the installation's: :mod:`mailgate.storage.keys` keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

MAC_LENGTH = 10


def sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.lower().encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:MAC_LENGTH]


def verify(key: bytes, text: str, mac: str) -> bool:
    return hmac.compare_digest(sign(key, text), mac.lower())
