"""The installation's signing key: one for every daemon on one database.

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
"""

from __future__ import annotations

import base64
import hashlib
import secrets as _random
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite

from mailgate.config import Config
from mailgate.errors import ConfigError
from mailgate.fsutil import create_synced

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
        create_synced(path, data + b"\n", mode=0o600)
    except OSError as exc:
        raise ConfigError(f"{config.path}: mailgate.secret_file: cannot read {path}: {exc.strerror}") from None
    if len(data) < 16:
        raise ConfigError(f"{config.path}: mailgate.secret_file: {path} holds fewer than 16 bytes")
    return data


def _record(engine: Engine, config: Config, key: bytes, keep_key: bool) -> bytes:
    """Record ``key`` (and its fingerprint) unless a key was recorded first; return the installation's key.

    One transaction: the rows of a daemon that loses the race, or whose key does
    not match, are rolled back with it, so the database never holds two stories.
    """
    from mailgate.storage.models import Installation

    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    values = {FINGERPRINT_ROW: fingerprint(key), **({KEY_ROW: key.decode()} if keep_key else {})}
    with engine.begin() as conn:
        for name, value in values.items():  # the fingerprint first: it is what decides
            conn.execute(
                dialect.insert(Installation)
                .values(name=name, value=value)
                .on_conflict_do_nothing(index_elements=["name"])
            )
        rows = conn.execute(
            select(Installation.name, Installation.value).where(Installation.name.in_([KEY_ROW, FINGERPRINT_ROW]))
        )
        held = {name: value for name, value in rows}
        if keep_key and held[FINGERPRINT_ROW] != fingerprint(held.get(KEY_ROW, "").encode()):
            raise ConfigError(
                f"{config.path}: mailgate.secret_file: this installation signs with a key file (fingerprint "
                f"{held[FINGERPRINT_ROW]}) and this daemon has none: set [mailgate] secret_file to a copy of it"
            )
        if not keep_key and held[FINGERPRINT_ROW] != fingerprint(key):
            raise ConfigError(
                f"{config.path}: mailgate.secret_file: the key in {key_path(config)} (fingerprint "
                f"{fingerprint(key)}) is not the key of this installation (the database records "
                f"{held[FINGERPRINT_ROW]}): every daemon on one database must sign with the same key; copy the "
                "key file of the other daemons here, or remove secret_file to use the key kept in the database"
            )
        return held[KEY_ROW].encode() if keep_key else key


def load_key(config: Config, engine: Engine | None = None) -> bytes:
    """The installation's signing key (see the module docstring). Raises ConfigError when unusable.

    Without an ``engine`` only the key file is read (tools that have no database).
    """
    override = configured_file(config)
    if engine is None or override is not None:
        key = read_key_file(config, key_path(config))
        assert key is not None
        return key if engine is None else _record(engine, config, key, keep_key=False)
    candidate = read_key_file(config, config.data_dir / "secret", create=False) or _new_key()
    return _record(engine, config, candidate, keep_key=True)
