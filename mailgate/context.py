"""What travels with a message through the pipeline: one typed object, no dicts.

``Services`` is built once per process (config, clock, blob store, and what
later steps need); ``MessageContext`` is built per message and filled in by
the steps in order. A step reads what earlier steps wrote and writes its own
fields; nothing else is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from mailgate.clock import Clock
from mailgate.config import Config
from mailgate.mail.parse import ParsedMail
from mailgate.storage.blobs import Blobs
from mailgate.storage.models import Message, Ticket

if TYPE_CHECKING:  # the types of what plugins install, from the layers above (never imported at run time)
    from mailgate.config import AgentConfig
    from mailgate.domain.lifecycle import Rating
    from mailgate.domain.sla import SlaConfig
    from mailgate.doors.imap_config import ImapAccount
    from mailgate.ops.health import DatabaseStatus
    from mailgate.ops.metrics import Metrics
    from mailgate.ops.scheduler import Sweep
    from mailgate.outbound.bounces import BounceNote
    from mailgate.outbound.outbox import OutboundState
    from mailgate.outbound.transports import Sender
    from mailgate.pipeline.steps.agents import AgentsState, Reading
    from mailgate.routing.plugin import RuleHolder
    from mailgate.routing.spam import SpamSettings

T = TypeVar("T")


@dataclass
class Envelope:
    """Where a message came from: the SMTP envelope, or what stood in for it."""

    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    source: str = "smtp"  # smtp, imap, pipe, mbox, maildir
    spool_id: str = ""
    peer: str = ""
    quiet: bool = False  # store only: no acknowledgment, no notification (a bulk import of old mail)


@dataclass
class RouteDecision:
    """What routing decided for a new ticket (and the rules that decided it)."""

    queue: str = ""
    priority: str = "normal"
    tags: list[str] = field(default_factory=list)
    assignee: str | None = None
    spam: bool = False
    auto_reply: bool = True
    template: str = ""
    locale: str = ""  # a rule's locale for the ticket's mail ("" = tell it from the mail, see locale_detect)
    drop: bool = False
    rules: list[str] = field(default_factory=list)


@dataclass
class Services:
    """Long-lived collaborators of the pipeline, built once per process."""

    config: Config
    clock: Clock
    blobs: Blobs
    # What the plugins (mailgate.plugins) install, each field owned by one module; None until it is installed.
    outbound: OutboundState | None = None  # outbound.plugin: settings, templates, signing key
    sender: Sender | None = None  # outbound.plugin: the transport (tests put a recorder here)
    agents: AgentsState | None = None  # pipeline.steps.agents
    rules: RuleHolder | None = None  # routing.plugin: the RuleSet in force, swapped on reload
    spam: SpamSettings | None = None  # routing.plugin
    sla: SlaConfig | None = None  # timers.sweeps
    imap_accounts: tuple[ImapAccount, ...] = ()  # doors.imap
    metrics: Metrics | None = None  # ops.metrics, when [metrics] listen is set
    metrics_listen: tuple[str, int] | None = None  # ops.metrics
    database_status: DatabaseStatus | None = None  # ops.health
    thread_finders: list[tuple[str, Callable[[MessageContext], Ticket | None]]] = field(default_factory=list)
    reactors: list[Callable[[MessageContext], None]] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)  # ops.scheduler
    # Hooks, chained by the plugins that want them; called by the daemon or the worker.
    on_committed: Callable[[list[Any]], None] | None = None  # after each batch commit (the outcomes)
    on_sla_breach: Callable[..., None] | None = None  # timers.escalation, when a target is missed
    count_smtp: Callable[[str], None] | None = None  # the SMTP door's verdicts (ops.metrics)
    wake_sender: Callable[[], object] | None = None  # set by the delivery task in the daemon
    wake_worker: Callable[[], None] | None = None  # set by the daemon: new spool entries
    reload_workers: Callable[[], None] | None = None  # set by the daemon: its worker processes reload (SIGHUP)


def installed(value: T | None, plugin: str) -> T:
    """A field of Services that a plugin installs, or a clear error naming the plugin that is missing."""
    if value is None:
        raise RuntimeError(f"{plugin} is not installed in this runtime")
    return value


@dataclass
class Notes:
    """What a step leaves for the steps after it: each field is written by one step and read by later ones."""

    # dedupe
    duplicate_of_ticket_id: int | None = None  # the ticket of the same mail stored before
    message_id_collision: dict[str, int | None] | None = None  # {ticket_id, message_pk} of another mail with the id
    message_id_indexed: bool | None = None  # whether the threading index held the id (None: not looked up)
    sender_lists: tuple[str, dict[str, str]] | None = None  # PostgreSQL: (sender, its block/allow entries) read
    message_row_id: int | None = None  # PostgreSQL: the id the mail's row will have, taken with the lookup
    # thread
    bounce: BounceNote | None = None  # outbound.bounces: a proven bounce, settled after the store
    signed: tuple[str, str] | None = None  # (role, owner) of the signed reply address the mail came to
    # authenticate
    reading: Reading | None = None  # pipeline.steps.agents: the reply read once (new text, commands, answer)
    agent: AgentConfig | None = None  # a proven agent's mail
    agent_proof: str = ""
    unproven_agent: str = ""  # an agent's address with no proof: stored, it changes nothing
    unproven_reason: str = ""
    automatic_agent_mail: str | None = None  # why an agent's mail is automatic (no #fwd, no relay)
    # followup
    author: str = ""
    new_text: str | None = None  # what is new in the mail, when a step read it (else the mail's text)
    direction: str = "in"  # in, out (relayed), note
    stranger: dict[str, Any] | None = None  # a stranger's mail to a ticket: what to hold or tell
    follows: dict[str, Any] | None = None  # the old ticket a new one follows up: {id, number, status}
    unproven_sender: str = ""  # the customer's address of a mail that could not prove it
    customer_proof: str = ""
    rating: Rating | None = None
    customer_close: bool = False
    reopen: bool = False
    merged_from: int | None = None
    forwarded_by: str = ""  # the agent who forwarded a customer's mail with #fwd
    forwarded_sender: str = ""
    # route
    routed_queue: str = ""
    spam_reason: str = ""
    spam_source: str = ""


@dataclass
class MessageContext:
    raw: bytes
    envelope: Envelope
    session: Session
    services: Services
    mail: ParsedMail = field(default_factory=ParsedMail)
    dedupe_key: str = ""
    content_sha256: str = ""  # the content digest of a mail with a Message-ID (mailgate.mail.sameness)
    raw_sha256: str = ""
    ticket: Ticket | None = None
    new_ticket: bool = False
    thread_reason: str = ""  # how the ticket was found: token, reference, new …
    route: RouteDecision = field(default_factory=RouteDecision)
    message: Message | None = None
    verdict: str = ""  # new, reply, duplicate, dropped …
    stopped: bool = False
    notes: Notes = field(default_factory=Notes)

    def stop(self, verdict: str) -> None:
        """End the pipeline for this message (a duplicate, a dropped mail)."""
        self.verdict = verdict
        self.stopped = True


def sender_address(ctx: MessageContext) -> str:
    """Who wrote: the From address, else the envelope sender, else a placeholder that says so."""
    return ctx.mail.from_addr or ctx.envelope.mail_from.lower() or "unknown@invalid"
