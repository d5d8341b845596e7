"""Spam: verdicts from upstream filters and sender lists, and the agents' #spam / #notspam.

Three sources, most specific first (see ``mailgate.pipeline.steps.route.decide``):

1. the sender lists: an address or ``@domain`` that agents blocked or allowed
   (the ``sender_lists`` table, filled by ``#spam`` / ``#notspam``) or that the
   admin listed in ``[spam] block`` / ``[spam] allow``;
2. a rule with ``spam = true`` or ``spam = false``;
3. the headers of the upstream filter: SpamAssassin (``X-Spam-Score``,
   ``X-Spam-Status``, ``X-Spam-Flag``) and rspamd (``X-Spamd-Result``,
   ``X-Spam``). When a score is present, ``[spam] threshold`` (and
   ``rspamd_threshold``) decides; a bare flag without a score is trusted.

Upstream filters add their headers on top of the mail, so the first (topmost)
occurrence is the one read: a sender cannot overrule the filter by writing
its own header further down.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, desc, select
from sqlalchemy.orm import Session

from mailgate.config import Config, Table
from mailgate.context import Services
from mailgate.mail.parse import ParsedMail
from mailgate.storage import audit, direct
from mailgate.storage.models import Event, SenderList, Ticket

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_SA_STATUS = re.compile(r"^\s*(yes|no)\b", re.IGNORECASE)
_SA_SCORE = re.compile(r"\b(?:score|hits)=([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)
_RSPAMD = re.compile(r"^\s*\w+:\s*(true|false)\s*\[\s*([-+]?\d+(?:\.\d+)?)\s*/", re.IGNORECASE)


@dataclass(frozen=True)
class SpamSettings:
    queue: str = "spam"
    threshold: float = 5.0
    rspamd_threshold: float = 5.0
    upstream: bool = True
    allow: frozenset[str] = frozenset()
    block: frozenset[str] = frozenset()


def parse_settings(config: Config) -> SpamSettings:
    """Read and check ``[spam]``; raises ConfigError naming the file and key."""
    t = Table(config.raw.get("spam"), config.path, "spam")
    threshold = t.float("threshold", 5.0)
    settings = SpamSettings(
        queue=t.str("queue", "spam"),
        threshold=threshold,
        rspamd_threshold=t.float("rspamd_threshold", threshold),
        upstream=t.bool("upstream", True),
        allow=_entries(t, "allow"),
        block=_entries(t, "block"),
    )
    t.finish()
    if not settings.queue:
        raise t.error("queue", "must not be empty")
    both = settings.allow & settings.block
    if both:
        raise t.error("allow", f"{sorted(both)[0]!r} is in both allow and block")
    return settings


def _entries(t: Table, key: str) -> frozenset[str]:
    entries = frozenset(e.strip().lower() for e in t.str_list(key, []))
    for entry in entries:
        if "@" not in entry or entry.endswith("@"):
            raise t.error(key, f"expected addresses or @domain entries, got {entry!r}")
    return entries


def settings_of(services: Services) -> SpamSettings:
    settings = services.spam
    return settings if isinstance(settings, SpamSettings) else parse_settings(services.config)


@dataclass(frozen=True)
class Upstream:
    """What the upstream filters said: spam (True/False, None when they said nothing) and why."""

    spam: bool | None
    score: float | None
    reason: str


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return float(match.group()) if match else None


def _spamassassin(mail: ParsedMail) -> tuple[float | None, bool]:
    status = mail.header("x-spam-status")
    score = _first_number(mail.header("x-spam-score")) if mail.header("x-spam-score") else None
    if score is None and (match := _SA_SCORE.search(status)):
        score = float(match.group(1))
    flag = mail.header("x-spam-flag").strip().lower() == "yes"
    if (match := _SA_STATUS.match(status)) is not None:
        flag = flag or match.group(1).lower() == "yes"
    return score, flag


def _rspamd(mail: ParsedMail) -> tuple[float | None, bool]:
    match = _RSPAMD.match(mail.header("x-spamd-result"))
    flag = mail.header("x-spam").strip().lower() in ("yes", "true")
    if match is None:
        return None, flag
    return float(match.group(2)), flag or match.group(1).lower() == "true"


def upstream_score(mail: ParsedMail) -> float | None:
    """The upstream spam score (SpamAssassin's, else rspamd's), or None: the ``spam_score`` rule field."""
    score = _spamassassin(mail)[0]
    return score if score is not None else _rspamd(mail)[0]


def upstream_verdict(mail: ParsedMail, settings: SpamSettings) -> Upstream:
    if not settings.upstream:
        return Upstream(None, None, "")
    verdicts = []
    for name, (score, flag), threshold in (
        ("SpamAssassin", _spamassassin(mail), settings.threshold),
        ("rspamd", _rspamd(mail), settings.rspamd_threshold),
    ):
        if score is not None:
            spam = score >= threshold
            verdicts.append(Upstream(spam, score, f"{name} score {score:g} {'>=' if spam else '<'} {threshold:g}"))
        elif flag:
            verdicts.append(Upstream(True, None, f"{name} flagged it as spam"))
    if not verdicts:
        return Upstream(None, None, "")
    return next((v for v in verdicts if v.spam), verdicts[0])


# The address and its @domain: two parameters, so the statement is not rendered again for each mail
_LISTED = select(SenderList.entry, SenderList.verdict).where(
    SenderList.entry.in_([bindparam("address"), bindparam("domain")])
)


def listing_read(address: str) -> tuple[direct.Query, dict[str, str]] | None:
    """The read of the sender lists for ``address`` (and its @domain), for a caller that sends it with
    other reads in one round trip; its rows, as a dict, are ``list_verdict``'s ``listed``. None: no address."""
    address = address.strip().lower()
    if "@" not in address:
        return None
    return _LISTED, {"address": address, "domain": "@" + address.rpartition("@")[2]}


def list_verdict(
    session: Session | None, address: str, settings: SpamSettings, *, listed: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """("block"|"allow", why) for the sender, by address first, then by @domain; None if unlisted.

    ``listed``: the stored entries read already by :func:`listing_read` for this address (no read here)."""
    read = listing_read(address)
    if read is None:
        return None
    values = read[1]
    entries = [values["address"], values["domain"]]
    stored: dict[str, str] = dict(listed) if listed is not None else {}
    if session is not None and listed is None:  # Core: set_sender flushes its row, so nothing waits for a flush
        stored = {entry: verdict for entry, verdict in direct.read(session, _LISTED, values)}
    for entry in entries:
        if entry in stored:
            return stored[entry], f"{entry} is on the {stored[entry]} list"
        for verdict, configured in (("block", settings.block), ("allow", settings.allow)):
            if entry in configured:
                return verdict, f"{entry} is in [spam] {verdict}"
    return None


def set_sender(session: Session, entry: str, verdict: str, actor: str, services: Services) -> SenderList:
    """Put an address (or @domain) on the block or allow list, replacing an earlier verdict."""
    entry = entry.strip().lower()
    row = session.get(SenderList, entry)
    if row is None:
        row = SenderList(entry=entry, verdict=verdict, actor=actor, created_at=services.clock.now())
        session.add(row)
    else:
        row.verdict, row.actor, row.created_at = verdict, actor, services.clock.now()
    session.flush()
    return row


def mark_spam(session: Session, services: Services, ticket: Ticket, actor: str, add_to_blocklist: bool = False) -> None:
    """An agent's ``#spam``: move the ticket to the spam queue; optionally block its sender."""
    settings, now = settings_of(services), services.clock.now()
    from_queue = ticket.queue
    ticket.spam, ticket.queue, ticket.updated_at = True, settings.queue, now
    blocked = ""
    if add_to_blocklist:
        blocked = set_sender(session, ticket.customer.address, "block", actor, services).entry
    audit.record(
        session,
        now,
        "ticket.spam",
        ticket=ticket,
        actor=actor,
        from_queue=from_queue,
        queue=ticket.queue,
        reason="marked by agent",
        blocklisted=blocked,
    )


def mark_not_spam(
    session: Session, services: Services, ticket: Ticket, actor: str, add_to_allowlist: bool = False
) -> None:
    """An agent's ``#notspam``: back to the queue it had before it was spam; optionally allow its sender."""
    settings, now = settings_of(services), services.clock.now()
    target = queue_before_spam(session, ticket, settings) or services.config.support.default_queue
    from_queue = ticket.queue
    ticket.spam, ticket.queue, ticket.updated_at = False, target, now
    allowed = ""
    if add_to_allowlist:
        allowed = set_sender(session, ticket.customer.address, "allow", actor, services).entry
    audit.record(
        session,
        now,
        "ticket.notspam",
        ticket=ticket,
        actor=actor,
        from_queue=from_queue,
        queue=target,
        allowlisted=allowed,
    )


def queue_before_spam(session: Session, ticket: Ticket, settings: SpamSettings) -> str:
    """The queue the ticket was in (or was routed to) when it was last called spam."""
    events = session.scalars(
        select(Event).where(Event.ticket_id == ticket.id, Event.kind == "ticket.spam").order_by(desc(Event.id))
    ).all()
    for event in events:
        queue = str((event.detail or {}).get("from_queue") or "")
        if queue and queue != settings.queue:
            return queue
    return ""
