"""Reactions to a stored message: the mail the daemon writes back.

The outbound modules plug in here; with none configured nothing is sent.
"""

from __future__ import annotations

from mailgate.context import MessageContext


def react(ctx: MessageContext) -> None:
    """Pipeline step: queue acknowledgments and notifications in the outbox."""
    for reactor in ctx.services.reactors:
        reactor(ctx)
