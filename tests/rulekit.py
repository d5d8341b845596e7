"""Shared pieces of the routing-rule tests: rule directories, configs with queues and agents, ticket views."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mailgate.context import MessageContext, RouteDecision
from mailgate.storage.models import Event, Ticket

QUEUES = [{"name": n} for n in ("billing", "sales", "vip", "tech", "hit", "other")]
AGENTS = [{"address": "bob@example.com", "name": "Bob"}, {"address": "carol@example.com", "name": "Carol"}]


def write_rules(directory: Path, **files: str) -> Path:
    """Write rule files (name without .toml -> TOML text, dedented) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def rules_config(make_config: Callable[..., Path], directory: Path, **sections: Any) -> Path:
    return make_config(rules={"dir": str(directory)}, queues=QUEUES, agents=AGENTS, **sections)


def last_ticket(harness: Any) -> dict[str, Any] | None:
    """The newest ticket as a dict (queue, priority, tags, assignee, spam, rules of its creation event)."""
    with harness.session() as s:
        ticket = s.scalars(select(Ticket).order_by(Ticket.id.desc())).first()
        if ticket is None:
            return None
        created = s.scalars(select(Event).where(Event.ticket_id == ticket.id, Event.kind == "ticket.created")).one()
        return {
            "number": ticket.number,
            "queue": ticket.queue,
            "priority": ticket.priority,
            "tags": list(ticket.tags),
            "assignee": ticket.assignee,
            "spam": ticket.spam,
            "rules": created.detail.get("rules"),
            "messages": len(ticket.messages),
        }


def ticket_count(harness: Any) -> int:
    with harness.session() as s:
        return len(s.scalars(select(Ticket.id)).all())


class RouteRecorder:
    """A reactor (the seam the outbound side plugs into) that keeps each new ticket's RouteDecision."""

    def __init__(self, harness: Any) -> None:
        self.routes: list[RouteDecision] = []
        harness.runtime.services.reactors.append(self)

    def __call__(self, ctx: MessageContext) -> None:
        self.routes.append(ctx.route)

    @property
    def last(self) -> RouteDecision:
        return self.routes[-1]
