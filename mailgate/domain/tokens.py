"""The ticket token in subjects: ``[#12]`` or, with a prefix, ``[ACME#12]``.

A token survives any reply or forward prefix a mail client adds (Re:, Fwd:,
AW:, SV:, Ответ: …) because it is searched anywhere in the subject. When we
write a subject we strip those prefixes and any old token, then put exactly
one token in front, so subjects never grow "Re: Re: [#1] [#1]".
"""

from __future__ import annotations

import re
from functools import lru_cache

# Reply and forward prefixes of common clients and languages, case-insensitive.
_PREFIXES = (
    "re",
    "fw",
    "fwd",
    "aw",
    "wg",
    "sv",
    "vs",
    "vb",
    "tr",
    "rv",
    "ref",
    "res",
    "enc",
    "odp",
    "pd",
    "ynt",
    "antw",
    "doorst",
    "réf",
    "ответ",
    "отв",
    "пересл",
    "fwd",
    "回复",
    "回覆",
    "转发",
    "答复",
    "r",
    "i",
)
_PREFIX = re.compile(
    r"^\s*(?:(?:"
    + "|".join(re.escape(p) for p in sorted(set(_PREFIXES), key=len, reverse=True))
    + r")\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)


@lru_cache(maxsize=16)
def _token_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(r"\[\s*" + re.escape(prefix) + r"\s*#\s*(\d{1,18})\s*\]", re.IGNORECASE)


def format_token(number: int, prefix: str = "") -> str:
    return f"[{prefix}#{number}]"


def find_ticket_number(subject: str, prefix: str = "") -> int | None:
    """The ticket number of the first token in ``subject``, or None."""
    match = _token_pattern(prefix).search(subject or "")
    return int(match.group(1)) if match else None


def strip_prefixes(subject: str) -> str:
    """Remove leading Re:/Fwd:/AW:/Ответ: … (repeated, any case)."""
    return _PREFIX.sub("", subject or "").strip()


def strip_token(subject: str, prefix: str = "") -> str:
    return re.sub(r"\s{2,}", " ", _token_pattern(prefix).sub("", subject or "")).strip()


def clean_subject(subject: str, prefix: str = "") -> str:
    """The subject as the customer meant it: no reply prefixes, no token."""
    previous = None
    text = subject or ""
    while previous != text:
        previous = text
        text = strip_prefixes(strip_token(text, prefix))
    return text


def subject_with_token(subject: str, number: int, prefix: str = "") -> str:
    """``[#12] Printer on fire``: one token in front, never doubled or stacked."""
    base = clean_subject(subject, prefix)
    token = format_token(number, prefix)
    return f"{token} {base}" if base else token
