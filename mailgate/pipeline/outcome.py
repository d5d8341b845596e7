"""What became of one mail of a batch: for the log, for the metrics, and for a daemon whose worker process made it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from mailgate.context import Envelope, MessageContext


@dataclass
class Outcome:
    """What became of one message of a batch."""

    envelope: Envelope
    ctx: MessageContext | None = None
    error: BaseException | None = None
    traceback: str = ""

    def summary(self) -> Committed:
        """What the metrics count of it; a worker process sends this to its daemon, which serves them."""
        ctx = self.ctx
        verdict = (ctx.verdict if ctx is not None and self.error is None else "failed") or "unknown"
        return Committed(
            source=self.envelope.source or "unknown",
            verdict=verdict,
            new_ticket=bool(ctx is not None and ctx.new_ticket and verdict == "new"),
            spool_id=self.envelope.spool_id,
            ok=self.error is None,
        )


class Committed(NamedTuple):
    """One mail of a committed batch, as the metrics see it (plain values: it crosses processes as JSON)."""

    source: str
    verdict: str
    new_ticket: bool
    spool_id: str
    ok: bool


def describe(outcome: Outcome) -> dict[str, object]:
    """The fields of the one log line per message decision."""
    ctx = outcome.ctx
    fields: dict[str, object] = {"spool": outcome.envelope.spool_id, "source": outcome.envelope.source}
    if ctx is not None:
        fields.update(
            msgid=ctx.mail.message_id,
            verdict=ctx.verdict,
            ticket=ctx.ticket.number if ctx.ticket is not None else "",
            via=ctx.thread_reason,
            queue=ctx.ticket.queue if ctx.ticket is not None else "",
            rules=",".join(ctx.route.rules),
        )
    else:
        fields.update(verdict="failed", error=f"{type(outcome.error).__name__}: {outcome.error}")
    return fields
