"""Short HMAC signatures for addresses we hand out (VERP bounces, signed reply addresses).

The key lives in a file (``[mailgate] secret_file``, default ``<data_dir>/secret``),
created with 32 random bytes and mode 0600 on first use, so no secret is ever
written in config.toml. A signature is 10 base32 characters of HMAC-SHA256
(50 bits): enough that guessing one by mail is hopeless, short enough for a
local part.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _random
from pathlib import Path

from mailgate.config import Config
from mailgate.errors import ConfigError

MAC_LENGTH = 10


def key_path(config: Config) -> Path:
    value = config.raw.get("mailgate", {}).get("secret_file", "")
    if value:
        path = Path(value)
        return path if path.is_absolute() else config.base_dir / path
    return config.data_dir / "secret"


def load_key(config: Config) -> bytes:
    """Read the signing key; create it if missing. Raises ConfigError when unusable."""
    path = key_path(config)
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = base64.b32encode(_random.token_bytes(32)).rstrip(b"=")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{config.path}: mailgate.secret_file: cannot read {path}: {exc.strerror}") from None
    if len(data) < 16:
        raise ConfigError(f"{config.path}: mailgate.secret_file: {path} holds fewer than 16 bytes")
    return data


def sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.lower().encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:MAC_LENGTH]


def verify(key: bytes, text: str, mac: str) -> bool:
    return hmac.compare_digest(sign(key, text), mac.lower())
