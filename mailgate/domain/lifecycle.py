"""The life of a ticket: statuses, what a follow-up does, ratings, and closing by the customer.

::

    new ──► open ──► pending ◄──► open ──► resolved ──► closed
      └──────────┴──────────┴───────────────►┘  ▲ │
                                   (reopen) ◄──────┘

* ``new``: nobody has acted yet. The first agent answer makes it ``open``.
* ``pending``: waiting for the customer. A customer reply makes it ``open``.
* ``resolved``: done, the customer was told. A customer reply within
  ``[lifecycle] reopen_days`` reopens it; a sweep closes it after that.
* ``closed``: final. A follow-up opens a new ticket that references it.

Everything here is pure: it takes values and returns decisions, or sets the
status fields of a ticket-like object with the time it is given. The
pipeline steps in :mod:`mailgate.pipeline.steps.agents` do the reading and the writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mailgate.config import Config, Table

STATUSES: tuple[str, ...] = ("new", "open", "pending", "resolved", "closed")
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")

# Where each status may go. A closed ticket stays closed: a follow-up opens a new one.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "resolved", "closed"}),
    "open": frozenset({"pending", "resolved", "closed"}),
    "pending": frozenset({"open", "resolved", "closed"}),
    "resolved": frozenset({"open", "closed"}),
    "closed": frozenset(),
}

# What a customer's follow-up does to the ticket it threads into.
KEEP, REOPEN, NEW_TICKET = "keep", "reopen", "new"


@dataclass(frozen=True)
class LifecycleSettings:
    """``[lifecycle]`` in config.toml."""

    reopen_days: int = 7
    customer_close_words: tuple[str, ...] = ("close", "resolved")
    stranger_policy: str = "new"  # what a mail naming a ticket it may not write to does: new, hold
    hold_queue: str = "held"


def parse_settings(config: Config) -> LifecycleSettings:
    """Read and check ``[lifecycle]``; raises ConfigError naming the file and key."""
    t = Table(config.raw.get("lifecycle"), config.path, "lifecycle")
    settings = LifecycleSettings(
        reopen_days=t.int("reopen_days", 7, minimum=0),
        customer_close_words=tuple(
            w.strip().casefold() for w in t.str_list("customer_close_words", ["close", "resolved"]) if w.strip()
        ),
        stranger_policy=t.str("stranger_policy", "new", choices=("new", "hold")),
        hold_queue=t.str("hold_queue", "held"),
    )
    t.finish()
    if not settings.hold_queue:
        raise t.error("hold_queue", "must not be empty")
    return settings


def transition_error(current: str, target: str) -> str | None:
    """Why ``current`` may not become ``target``, or None when it may (staying put is allowed)."""
    if target not in STATUSES:
        return f"unknown status {target!r}"
    if current == target or target in TRANSITIONS.get(current, frozenset()):
        return None
    if current == "closed":
        return "the ticket is closed; a closed ticket stays closed (a follow-up opens a new ticket)"
    return f"a {current} ticket cannot become {target}"


def set_status(ticket: Any, target: str, now: datetime) -> bool:
    """Move ``ticket`` to ``target`` and keep its timestamps true; False when it already was there.

    ``resolved_at`` is the time of the last resolution (cleared on reopen),
    ``pending_since`` is set while pending (and the reminder mark with it),
    ``closed_at`` once closed. Callers check :func:`transition_error` first.
    """
    if ticket.status == target:
        return False
    ticket.status = target
    ticket.updated_at = now
    if target == "pending":
        ticket.pending_since, ticket.reminded_at = now, None
    else:
        ticket.pending_since = None
    if target == "resolved":
        ticket.resolved_at = now
    elif target in ("open", "pending", "new"):
        ticket.resolved_at = None
    if target == "closed":
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    return True


def record_first_response(ticket: Any, now: datetime) -> bool:
    """The first agent answer to reach the customer: its time is the first-response time."""
    if ticket.first_response_at is not None:
        return False
    ticket.first_response_at = now
    return True


def followup_action(status: str, resolved_at: datetime | None, now: datetime, reopen_days: int) -> str:
    """What a customer's follow-up does: KEEP the status, REOPEN the ticket, or open a NEW_TICKET."""
    if status == "closed":
        return NEW_TICKET
    if status == "resolved":
        if resolved_at is not None and now - resolved_at > timedelta(days=reopen_days):
            return NEW_TICKET
        return REOPEN
    if status == "pending":
        return REOPEN
    return KEEP


def close_due(resolved_at: datetime | None, now: datetime, reopen_days: int) -> bool:
    """A resolved ticket is closed once its reopen window has passed."""
    return resolved_at is not None and now - resolved_at > timedelta(days=reopen_days)


# Ratings: one word (or a number 1-5) on the first line of a reply to the resolved notice.
GOOD_WORDS = frozenset({"good", "great", "excellent", "bon", "bien", "gut", "хорошо", "👍"})
BAD_WORDS = frozenset({"bad", "poor", "mauvais", "schlecht", "плохо", "👎"})
_RATING_NUMBER = re.compile(r"^([1-5])(?:\s*(?:/\s*5|stars?|étoiles?|sterne?|звезд\w*))?$", re.IGNORECASE)
_EDGE_PUNCTUATION = " \t.!,;:-–—\"'()[]*"


@dataclass(frozen=True)
class Rating:
    value: str  # "good", "bad", or "1" … "5"
    comment: str  # the rest of the reply, kept with the rating


def parse_rating(new_text: str) -> Rating | None:
    """A rating reply: its first line is only ``good``/``bad`` or a number 1–5 (``4/5``, ``5 stars``)."""
    lines = new_text.strip().splitlines()
    if not lines:
        return None
    first = lines[0].strip().strip(_EDGE_PUNCTUATION).casefold()
    if not first or len(first) > 20:
        return None
    comment = "\n".join(lines[1:]).strip()
    if first in GOOD_WORDS:
        return Rating("good", comment)
    if first in BAD_WORDS:
        return Rating("bad", comment)
    match = _RATING_NUMBER.match(first)
    if match:
        return Rating(match.group(1), comment)
    return None


def is_close_request(new_text: str, words: tuple[str, ...]) -> bool:
    """A customer's own close: the first line of their reply is ``#close`` or one of ``words``."""
    lines = new_text.strip().splitlines()
    if not lines:
        return False
    first = lines[0].strip().casefold()
    if first == "#close":
        return True
    return first.strip(_EDGE_PUNCTUATION) in words
