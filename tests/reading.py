"""The test mails of tests/data/reading: one small mail per class of real-world mail that is hard to read."""

from __future__ import annotations

from pathlib import Path

from mailgate.mail.parse import ParsedMail, parse

READING = Path(__file__).parent / "data" / "reading"


def fixture(name: str) -> bytes:
    return (READING / name).read_bytes()


def read(name: str) -> ParsedMail:
    return parse(fixture(name))


def names(mail: ParsedMail) -> list[str]:
    return [a.filename for a in mail.attachments]
