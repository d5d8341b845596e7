"""Automatic mail that threads to no ticket opens none: it is held, listed by ``mailgate mail held``.

An out-of-office answer or a report that names no mail of ours is no case to
work on, and a ticket for each would bury the real ones. The last thread
finder holds such a mail instead of opening a ticket: its raw bytes go to the
blob store and a ``mail.automatic_held`` event records who sent it, its kind
and why it is automatic (see :mod:`mailgate.mail.automatic`), so an admin can
list it and read it. ``[reading] unthreaded_automatic = "ticket"`` opens a
ticket for it as before. Delivery reports (bounces) that match nothing are
settled and kept by :mod:`mailgate.outbound.bounces` before this finder runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailgate.mail.automatic import HELD_KINDS
from mailgate.storage import audit

if TYPE_CHECKING:
    from mailgate.context import MessageContext
    from mailgate.storage.models import Ticket

HELD_EVENT = "mail.automatic_held"


def hold_unthreaded(ctx: MessageContext) -> Ticket | None:
    """Thread finder, last in line: hold an automatic mail that found no ticket; never finds one."""
    mail = ctx.mail
    if mail.kind not in HELD_KINDS or ctx.services.config.reading.unthreaded_automatic != "hold":
        return None
    sha = ctx.services.blobs.put(ctx.raw)
    audit.record(
        ctx.session,
        ctx.services.clock.now(),
        HELD_EVENT,
        actor=mail.from_addr or ctx.envelope.mail_from,
        message_id=mail.message_id,
        mail_kind=mail.kind,
        reason=mail.kind_reason,
        subject=mail.subject[:300],
        source=ctx.envelope.source,
        raw_sha256=sha,
    )
    ctx.stop("automatic")
    return None
