"""Routing: decide queue, priority, tags, assignee and spam for a new ticket.

Without rule files every new ticket goes to ``[support] default_queue``.
"""

from __future__ import annotations

from mailgate.context import MessageContext, RouteDecision


def route(ctx: MessageContext) -> None:
    """Pipeline step: fill ``ctx.route`` for a mail that opens a new ticket."""
    if not ctx.new_ticket:
        return
    ctx.route = RouteDecision(queue=ctx.services.config.support.default_queue)
