"""One spool entry: the message file, its envelope line, and its sidecar.

The entry's file starts with one ``X-Mailgate-Envelope:`` line (the
envelope as JSON) so that a single rename publishes message and envelope
together; a sidecar ``.json`` written later (attempts, errors, claims) wins
over that line.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENVELOPE_PREFIX = b"X-Mailgate-Envelope: "
_counter = itertools.count()


@dataclass
class SpoolMeta:
    """The sidecar of one spool entry."""

    id: str
    source: str = "smtp"
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    peer: str = ""
    received_at: str = ""
    attempts: int = 0
    last_error: str = ""
    traceback: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1).encode()

    def envelope_line(self) -> bytes:
        """The first line of the entry's file: ASCII JSON on one line (control characters escaped)."""
        return ENVELOPE_PREFIX + json.dumps(asdict(self), separators=(",", ":")).encode() + b"\r\n"

    @classmethod
    def from_json(cls, data: bytes) -> SpoolMeta:
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


@dataclass(frozen=True)
class SpoolEntry:
    id: str
    state: str
    eml: Path
    sidecar: Path

    def read_meta(self) -> SpoolMeta:
        """The sidecar if there is one, else the envelope line the entry was written with."""
        try:
            return SpoolMeta.from_json(self.sidecar.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            return SpoolMeta(id=self.id, last_error="sidecar unreadable")
        try:
            with open(self.eml, "rb") as handle:
                line = handle.readline()
            if line.startswith(ENVELOPE_PREFIX):
                return SpoolMeta.from_json(line[len(ENVELOPE_PREFIX) :])
        except (OSError, ValueError):
            pass
        return SpoolMeta(id=self.id, last_error="envelope missing or unreadable")

    def read_raw(self) -> bytes:
        """The message exactly as received (without the envelope line), read once: no copy of a big mail."""
        with open(self.eml, "rb") as handle:
            first = handle.readline()
            if first.startswith(ENVELOPE_PREFIX):
                return handle.read()
            return first + handle.read()

    @property
    def size(self) -> int:
        try:
            return self.eml.stat().st_size
        except OSError:
            return 0


def new_id() -> str:
    """Ids sort by arrival time and are unique across processes."""
    return f"{time.time_ns():020d}-{os.getpid()}-{next(_counter)}"
