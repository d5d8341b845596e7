"""IMAP on the wire: folder names in modified UTF-7, UID sets, and reading the answers.

Pure functions over strings and the response lines aioimaplib hands back
(``bytes`` lines, ``bytearray`` literals), so each is tested without a
server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_folder(name: str) -> str:
    """A folder name in IMAP's modified UTF-7: ASCII stays, ``&`` is ``&-``, the rest is ``&<base64>-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + data.replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_folder(name: str) -> str:
    """The readable name of a folder name in modified UTF-7 (left as is when it is not valid)."""

    def repl(match: re.Match[str]) -> str:
        inner = match.group(1)
        if not inner:
            return "&"
        data = inner.replace(",", "/")
        return base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be")

    try:
        return re.sub(r"&([A-Za-z0-9+,]*)-", repl, name)
    except ValueError:
        return name


def mailbox(name: str) -> str:
    return quote(encode_folder(name))


def uid_set(uids: Iterable[int]) -> str:
    """``1:3,7,9:10`` for [1, 2, 3, 7, 9, 10]: ranges only over UIDs we hold, so no stranger is included."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = None
    for uid in ordered:
        if prev is not None and uid == prev + 1:
            prev = uid
            continue
        if start is not None:
            parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


_FETCH = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')


def parse_fetch(lines: list[Any]) -> list[tuple[int, bytes]]:
    """(uid, raw message) pairs of a ``UID FETCH … (UID BODY.PEEK[])`` answer."""
    found = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not isinstance(line, bytes) or not _FETCH.match(line) or not line.endswith(b"}"):
            continue
        if index >= len(lines) or not isinstance(lines[index], bytearray):
            continue
        raw = bytes(lines[index])
        index += 1
        match = _UID.search(line)
        if match is None and index < len(lines) and isinstance(lines[index], bytes):
            match = _UID.search(lines[index])  # some servers put UID after the literal
        if match is not None:
            found.append((int(match.group(1)), raw))
    return found


def parse_sizes(lines: list[Any]) -> dict[int, int]:
    sizes = {}
    for line in lines:
        if isinstance(line, bytes) and _FETCH.match(line):
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def parse_list(lines: list[Any]) -> list[tuple[str, set[str]]]:
    """(folder name, flags) of a LIST answer, names decoded from modified UTF-7."""
    folders = []
    for line in lines:
        if not isinstance(line, bytes) or not (match := _LIST.match(line)):
            continue
        name = match.group("name").decode("utf-8", "replace")
        if name.startswith('"') and name.endswith('"'):
            name = re.sub(r"\\(.)", r"\1", name[1:-1])
        folders.append((decode_folder(name), set(match.group("flags").decode().split())))
    return folders
