"""Routing: decide queue, priority, tags, assignee, spam and acknowledgment for a new ticket.

``decide`` is the one function that turns a mail into a decision; the
pipeline's ``route`` step and ``mailgate rules explain`` both call it, so
what explain shows is what the pipeline does. The rules come from
``services.rules`` (a holder whose ``.current`` RuleSet is swapped
whole on reload); without rule files every new ticket goes to
``[support] default_queue``.

The spam verdict, most specific first: the sender lists, then a rule's
``spam = …``, then the upstream filter's headers. A spam ticket goes to the
``[spam] queue``, unassigned, with no acknowledgment (``auto_reply = False``);
reactors that write mail must skip it.

Follow-ups of existing tickets are not routed again; only ``drop`` applies to
them, so a blocked sender cannot write into a ticket by quoting its token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mailgate.context import MessageContext, RouteDecision, Services
from mailgate.routing.facts import MailFacts
from mailgate.routing.match import Outcome, evaluate
from mailgate.routing.ruleset import EMPTY, RuleSet
from mailgate.routing.spam import SpamSettings, list_verdict, settings_of, upstream_verdict


@dataclass
class Routing:
    """A decision, with what explain needs to show how it came about."""

    decision: RouteDecision
    routed_queue: str  # the queue the rules chose, before a spam verdict moved it
    spam_source: str = ""  # list, rule, upstream or ""
    spam_reason: str = ""
    outcome: Outcome = field(default_factory=Outcome)

    def as_dict(self) -> dict[str, Any]:
        d = self.decision
        return {
            "queue": d.queue,
            "priority": d.priority,
            "tags": list(d.tags),
            "assignee": d.assignee,
            "spam": d.spam,
            "spam_reason": self.spam_reason,
            "auto_reply": d.auto_reply,
            "template": d.template,
            "locale": d.locale,
            "drop": d.drop,
            "rules": list(d.rules),
        }


def current_rules(services: Services) -> RuleSet:
    holder = services.rules
    return holder.current if holder is not None else EMPTY


def decide(
    ruleset: RuleSet,
    facts: MailFacts,
    settings: SpamSettings,
    default_queue: str,
    listed: tuple[str, str] | None = None,
    *,
    explain: bool = False,
) -> Routing:
    """The routing of one mail as a new ticket; ``listed`` is the sender-list verdict, if any."""
    out = evaluate(ruleset, facts, explain=explain)
    queue = out.value("queue") or default_queue
    decision = RouteDecision(
        queue=queue,
        priority=out.value("priority") or "normal",
        tags=list(out.tags),
        assignee=out.value("assign"),
        auto_reply=out.value("auto_reply", True),
        template=out.value("template") or "",
        locale=out.value("locale") or "",
        drop=bool(out.value("drop", False)),
        rules=list(out.rules),
    )
    routing = Routing(decision, routed_queue=queue, outcome=out)
    if listed is not None:
        spam, routing.spam_source, routing.spam_reason = listed[0] == "block", "list", listed[1]
    elif out.value("spam") is not None:
        spam, routing.spam_source = out.value("spam"), "rule"
        routing.spam_reason = f"rule {out.by('spam')!r} says spam = {str(spam).lower()}"
    else:
        upstream = upstream_verdict(facts.mail, settings)
        spam, routing.spam_reason = bool(upstream.spam), upstream.reason
        routing.spam_source = "upstream" if upstream.spam is not None else ""
    if spam:
        decision.spam, decision.queue, decision.auto_reply, decision.assignee = True, settings.queue, False, None
    return routing


def decide_for(
    session: Session | None,
    facts: MailFacts,
    ruleset: RuleSet,
    settings: SpamSettings,
    default_queue: str,
    *,
    explain: bool = False,
    read_lists: tuple[str, dict[str, str]] | None = None,
) -> Routing:
    """``decide`` with the sender lists read from the database (``session`` may be None; ``read_lists``:
    the sender's entries read already, by dedupe: see ``Notes.sender_lists``)."""
    sender = facts.text("from")
    known = read_lists[1] if read_lists is not None and sender and read_lists[0] == sender[0] else None
    listed = list_verdict(session, sender[0], settings, listed=known) if sender else None
    return decide(ruleset, facts, settings, default_queue, listed, explain=explain)


def route(ctx: MessageContext) -> None:
    """Pipeline step: fill ``ctx.route`` (queue … spam, auto_reply, template, deciding rules)."""
    ruleset = current_rules(ctx.services)
    facts = MailFacts(ctx.mail, ctx.envelope)
    if not ctx.new_ticket:
        if ruleset.has_drop:
            out = evaluate(ruleset, facts)
            if out.value("drop"):
                ctx.route = RouteDecision(drop=True, rules=[out.by("drop")])
        if ctx.ticket is not None and ctx.ticket.spam:
            ctx.route.spam, ctx.route.auto_reply = True, False
        return
    routing = decide_for(
        ctx.session,
        facts,
        ruleset,
        settings_of(ctx.services),
        ctx.services.config.support.default_queue,
        read_lists=ctx.notes.sender_lists,
    )
    ctx.route = routing.decision
    ctx.notes.routed_queue = routing.routed_queue
    ctx.notes.spam_reason = routing.spam_reason
    ctx.notes.spam_source = routing.spam_source
