"""Canned answers: ``templates/canned/<name>.j2``, sent by an agent's ``#template <name>``.

A canned answer is a template like the others (a ``text`` block, the same
documented context: ``ticket``, ``customer``, ``agent``, ``support`` …) whose
text is relayed to the customer as the agent's answer, below whatever the
agent wrote. A locale of its own, ``canned/<locale>/<name>.j2``, wins over
``canned/<name>.j2`` for tickets in that locale; the admin's template
directory wins over the shipped one, as for every template.
"""

from __future__ import annotations

from typing import Any

from mailgate.config import AgentConfig
from mailgate.context import Services
from mailgate.outbound import outbox, template_context, templating
from mailgate.storage.models import Ticket

DIRECTORY = "canned"


def names(services: Services, locale: str = "") -> frozenset[str]:
    """Every canned answer an agent may name."""
    found: set[str] = set()
    for base in outbox.state(services).templates.directories:
        for sub in (base / DIRECTORY, base / DIRECTORY / locale if locale else None):
            if sub is not None and sub.is_dir():
                found.update(p.name[: -len(templating.SUFFIX)] for p in sub.glob(f"*{templating.SUFFIX}"))
    return frozenset(found)


def render(services: Services, ticket: Ticket, name: str, agent: AgentConfig) -> str:
    """The text of canned answer ``name`` for ``ticket``; raises jinja2.TemplateError."""
    templates = outbox.state(services).templates
    locale = outbox.queue_locale(services.config, ticket.queue, ticket.locale)
    template = templates.text_env.select_template(
        [f"{DIRECTORY}/{locale}/{name}{templating.SUFFIX}", f"{DIRECTORY}/{name}{templating.SUFFIX}"]
    )
    data: dict[str, Any] = {
        **templating.empty_context(),
        **template_context.build_context(
            services,
            ticket=ticket,
            message=None,
            locale=locale,
            reply_to=services.config.support.address,
            extra={"agent": {"name": agent.name or services.config.support.name, "address": ""}},
        ),
    }
    return "".join(template.blocks["text"](template.new_context(data)))
