"""Short HMAC signatures for addresses we hand out (VERP bounces, signed reply addresses).

One key for the whole installation: an address signed by one daemon must be
proven by every other daemon on the same database (a reply to machine A's
notification may reach machine B). So by default the key lives in the
database (the ``installation`` table), created once, atomically, by whichever
daemon starts first (INSERT … ON CONFLICT DO NOTHING, then read back what won).
An installation upgraded from a per-machine key file (``<data_dir>/secret``)
adopts that file's key, so the addresses it signed before stay valid.

A configured ``[mailgate] secret_file`` overrides the database key (the file
is created with 32 random bytes and mode 0600 when missing), and only its
fingerprint is recorded in the database: a daemon whose key differs from the
recorded fingerprint refuses to start, because its signatures would be
"unproven" at every other daemon. No secret is ever written in config.toml.

A signature is 10 base32 characters of HMAC-SHA256 (50 bits): enough that
guessing one by mail is hopeless, short enough for a local part.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _random
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from mailgate.config import Config
from mailgate.errors import ConfigError

MAC_LENGTH = 10
KEY_ROW, FINGERPRINT_ROW = "signing_key", "signing_key_fingerprint"


def configured_file(config: Config) -> Path | None:
    """The ``secret_file`` the config names, or None (the key lives in the database)."""
    value = config.raw.get("mailgate", {}).get("secret_file", "")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else config.base_dir / path


def key_path(config: Config) -> Path:
    """The key file: the configured one, else the per-machine file of earlier versions."""
    return configured_file(config) or config.data_dir / "secret"


def fingerprint(key: bytes) -> str:
    """What the database records of a key: enough to tell two keys apart, useless to sign with."""
    return hashlib.sha256(b"mailgate-signing-key\0" + key).hexdigest()[:16]


def _new_key() -> bytes:
    return base64.b32encode(_random.token_bytes(32)).rstrip(b"=")


def read_key_file(config: Config, path: Path, create: bool = True) -> bytes | None:
    """The key in ``path``; made anew (mode 0600) when missing and ``create``. Raises ConfigError when unusable."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _new_key()
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


def _record(engine: Engine, values: dict[str, str]) -> dict[str, str]:
    """Insert the rows nobody inserted yet, in one transaction; return what the database holds now."""
    from mailgate.models import Installation

    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as conn:
        for name, value in values.items():
            conn.execute(dialect.insert(Installation).values(name=name, value=value)
                         .on_conflict_do_nothing(index_elements=["name"]))
        rows = conn.execute(select(Installation.name, Installation.value)
                            .where(Installation.name.in_([KEY_ROW, FINGERPRINT_ROW])))
        return {name: value for name, value in rows}


def load_key(config: Config, engine: Engine | None = None) -> bytes:
    """The installation's signing key (see the module docstring). Raises ConfigError when unusable.

    Without an ``engine`` only the key file is read (tools that have no database).
    """
    override = configured_file(config)
    if engine is None:
        key = read_key_file(config, key_path(config))
        assert key is not None
        return key
    if override is not None:
        key = read_key_file(config, override)
        assert key is not None
        held = _record(engine, {FINGERPRINT_ROW: fingerprint(key)})
        if held[FINGERPRINT_ROW] != fingerprint(key):
            raise ConfigError(
                f"{config.path}: mailgate.secret_file: the key in {override} (fingerprint {fingerprint(key)}) "
                f"is not the key of this installation (the database records {held[FINGERPRINT_ROW]}): every "
                "daemon on one database must sign with the same key; copy the key file of the other daemons "
                "here, or remove secret_file to use the key kept in the database")
        return key
    candidate = read_key_file(config, config.data_dir / "secret", create=False) or _new_key()
    held = _record(engine, {KEY_ROW: candidate.decode(), FINGERPRINT_ROW: fingerprint(candidate)})
    if KEY_ROW not in held:
        raise ConfigError(
            f"{config.path}: mailgate.secret_file: this installation signs with a key file (fingerprint "
            f"{held[FINGERPRINT_ROW]}) and this daemon has none: set [mailgate] secret_file to a copy of it")
    key = held[KEY_ROW].encode()
    if held[FINGERPRINT_ROW] != fingerprint(key):
        raise ConfigError(f"{config.path}: the database holds a signing key that does not match its fingerprint")
    return key


def sign(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.lower().encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:MAC_LENGTH]


def verify(key: bytes, text: str, mac: str) -> bool:
    return hmac.compare_digest(sign(key, text), mac.lower())
