"""The language a ticket's mail speaks to its customer, chosen once, when the ticket opens.

In order, the first that names a language we have templates for:

1. a routing rule's ``locale`` (rules/README.md);
2. the mail's ``Content-Language`` header (its first primary tag: ``fr-CA`` → ``fr``);
3. the language of the mail's new text, told by py3langid (its model ships in
   the package: nothing is downloaded), when it is sure enough
   (:data:`MIN_CONFIDENCE`) on enough text (:data:`MIN_LETTERS`);
4. the queue's ``locale``, else ``[support] locale``.

"Templates for" means a ``<locale>/`` folder in the admin's templates or the
shipped ones (en, fr, ru, de, es), so a detected language with no templates
falls through to the queue's instead of to English.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

MIN_CONFIDENCE = 0.9
MIN_LETTERS = 12
MAX_SAMPLE = 2000  # characters of text read: the language shows in the first lines
REMEMBERED = 256  # samples whose answer is kept (more than a batch's mails: see detect)
_PRIMARY = re.compile(r"[A-Za-z]{2,3}")


_LOADING = threading.Lock()
_cache_dir: Path | None = None


@lru_cache(maxsize=1)
def _loaded() -> Any:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    model_file = MODEL_DIR / MODEL_FILE
    directory = _cache_dir / cache_name(model_file) if _cache_dir is not None else None
    parts = _read_cache(directory) if directory is not None else None
    if parts is None and directory is not None and _unpack_apart(directory):
        parts = _read_cache(directory)
    if parts is None:  # no usable cache folder: unpacked here, as the shipped model always was
        from py3langid.modelio import load_model

        parts = load_model(model_file)
        if directory is not None:
            _write_cache(directory, parts)
    ptc, pc, classes, nextmove, row, output = parts
    return LanguageIdentifier(ptc, pc, classes, nextmove, output, norm_probs=True, tk_row=row)


def _unpack_apart(directory: Path) -> bool:
    """Unpack the model into ``directory`` in a child interpreter; True when it did.

    Unpacking holds the whole decompressed model (over 100 MB) for a moment; done here, that peak would
    stay in this process's high-water mark and its heap for good. The child's memory goes with it.
    """
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailgate.mail.language", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def cache_name(model_file: Path) -> str:
    """The unpacked model's folder: named by the shipped file's identity, so an upgrade unpacks anew."""
    from importlib.metadata import version

    stat = model_file.stat()
    return f"langid-{version('py3langid')}-{stat.st_size}-{int(stat.st_mtime)}"


def _read_cache(directory: Path) -> tuple[Any, ...] | None:
    """The model from its unpacked copy, memory-mapped: every process shares one copy in the page
    cache, and only the pages a mail's bytes and features reach are ever read. None when there is no
    usable copy."""
    import json

    import numpy as np

    try:
        ptc = np.load(directory / "ptc.npy", mmap_mode="r")
        pc = np.load(directory / "pc.npy")
        classes = json.loads((directory / "classes.json").read_text())
        nextmove, row = (_mapped(directory / name) for name in ("nextmove.bin", "row.bin"))
        output = np.load(directory / "output.npy").tolist()
    except (OSError, ValueError, KeyError):
        return None
    return ptc, pc, classes, nextmove, row, output


def _mapped(path: Path) -> memoryview:
    """A file of native unsigned integers (its first line: the type code) as a read-only view."""
    import mmap

    with path.open("rb") as file:
        code = file.readline().strip().decode()
        offset = file.tell()
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    if code not in ("H", "I", "L"):
        raise ValueError(f"{path}: not an unpacked table")
    return memoryview(mapped)[offset:].cast(code)  # type: ignore[call-overload]


def _write_cache(directory: Path, parts: tuple[Any, ...]) -> None:
    """Unpack once per model version (a folder written whole, then renamed: readers never see half)."""
    import json
    import os
    import shutil
    import tempfile

    import numpy as np

    ptc, pc, classes, nextmove, row, output = parts
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    except OSError:
        return  # a read-only data directory: load from the shipped file each time, as before
    try:
        np.save(tmp / "ptc.npy", np.ascontiguousarray(ptc))
        np.save(tmp / "pc.npy", np.asarray(pc))
        (tmp / "classes.json").write_text(json.dumps(list(classes)))
        for name, table in (("nextmove.bin", nextmove), ("row.bin", row)):
            _write_table(tmp / name, table)
        np.save(tmp / "output.npy", np.asarray(output, dtype=np.int32))
        tmp.chmod(0o755)  # the shipped model, unpacked: nothing secret
        os.replace(tmp, directory)
    except OSError:  # another process unpacked it first, or the disk is full: either way, not needed
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_table(path: Path, table: Any) -> None:
    """An ``array.array`` as its type code, padded to its item size, then its bytes (see :func:`_mapped`)."""
    head = table.typecode.encode() + b"\n"
    pad = -(len(head)) % table.itemsize
    with path.open("wb") as file:
        file.write(b" " * pad + head if pad else head)
        table.tofile(file)


def _identifier() -> Any:
    """py3langid's identifier with normalised probabilities, loaded once per process (1-5 s of CPU from
    the shipped file, milliseconds from the unpacked copy in the cache folder: see :func:`load`)."""
    with _LOADING:
        return _loaded()


def load(cache_dir: Path | None = None) -> None:
    """Load the model now (a worker does, before it claims its first mail; see Worker.warm_up).

    With ``cache_dir`` (``[mailgate] cache_dir``), the model is unpacked there once and then mapped
    from it: a process start costs no decompression and the processes share one copy in memory.
    """
    global _cache_dir
    with _LOADING:
        if cache_dir is not None and _loaded.cache_info().currsize == 0:
            _cache_dir = cache_dir
    _identifier()


def detect(text: str) -> str:
    """The language of ``text`` as a two-letter code, or "" when it is too short or unsure.

    Remembered for the last :data:`REMEMBERED` samples: a worker detects the language of a batch's
    likely new tickets before its transaction (``pipeline.run.prepare``), and the store step, inside
    it, then finds the answer instead of spending most of a millisecond again while it holds the lock.
    """
    return _detect_sample(text[:MAX_SAMPLE])


@lru_cache(maxsize=REMEMBERED)
def _detect_sample(sample: str) -> str:
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return ""
    language, confidence = _identifier().classify(sample)
    return str(language) if confidence >= MIN_CONFIDENCE else ""


def from_header(value: str) -> str:
    """``Content-Language: fr-CA, en`` → ``fr``."""
    match = _PRIMARY.match(value.split(",", 1)[0].strip())
    return match.group(0).lower() if match else ""


@lru_cache(maxsize=8)
def available(directories: tuple[Path, ...]) -> frozenset[str]:
    """The locales with templates: the folders named like a language in the template directories (read once)."""
    found: set[str] = set()
    for directory in directories:
        if directory.is_dir():
            found.update(p.name for p in directory.iterdir() if p.is_dir() and _PRIMARY.fullmatch(p.name))
    return frozenset(found)


def choose(*, rule: str, content_language: str, text: str, fallback: str, known: frozenset[str]) -> str:
    """The ticket's locale, by the order of the module docstring."""
    if rule:
        return rule
    header = from_header(content_language)
    if header in known:
        return header
    detected = detect(text)
    return detected if detected in known else fallback


def _unpack_main(directory: Path) -> int:
    """``python -m mailgate.mail.language DIR``: unpack the shipped model into DIR (see _unpack_apart)."""
    from py3langid.langid import MODEL_DIR, MODEL_FILE
    from py3langid.modelio import load_model

    _write_cache(directory, load_model(MODEL_DIR / MODEL_FILE))
    return 0 if _read_cache(directory) is not None else 1


if __name__ == "__main__":
    import sys

    sys.exit(_unpack_main(Path(sys.argv[1])))
