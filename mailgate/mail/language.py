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
_PRIMARY = re.compile(r"[A-Za-z]{2,3}")


_LOADING = threading.Lock()


@lru_cache(maxsize=1)
def _loaded() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _identifier() -> Any:
    """py3langid's identifier with normalised probabilities, loaded once per process (1-5 s of CPU: a
    worker loads it before it claims any mail, see :func:`load`)."""
    with _LOADING:
        return _loaded()


def load() -> None:
    """Load the model now (a worker does, before it claims its first mail; see Worker.warm_up)."""
    _identifier()


def detect(text: str) -> str:
    """The language of ``text`` as a two-letter code, or "" when it is too short or unsure."""
    sample = text[:MAX_SAMPLE]
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
