"""What the tests of the MIME tree compare: every decision of the parser, and the mails they compare it on."""

from __future__ import annotations

from email.message import Message
from pathlib import Path

from tests.hostile import hostile_messages

DATA = Path(__file__).resolve().parent.parent / "data"


def shape(message: Message) -> list[tuple[object, ...]]:
    """Everything the parser decided, part by part."""
    return [
        (
            part.get_content_type(),
            list(part.raw_items()),
            part.get_payload() if not part.is_multipart() else len(part.get_payload()),
            part.preamble,
            part.epilogue,
            [type(d).__name__ for d in part.defects],
        )
        for part in message.walk()
    ]


def sample_mails() -> list[tuple[str, bytes]]:
    """The reading and client mails of tests/data, and every hostile mail: (name, raw bytes)."""
    files = sorted([*(DATA / "reading").glob("*.eml"), *(DATA / "clients").glob("*.eml")])
    return [(path.name, path.read_bytes()) for path in files] + hostile_messages()
