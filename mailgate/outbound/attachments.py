"""Which stored files travel with the mail we send, and which stay on the ticket.

Two directions, two rules:

- **to agents** (notifications, and the ``#files`` command): the customer's
  files go as attachments, same bytes, name and type, up to
  ``[notify] max_attachment_bytes`` per mail (default 10 MB); the rest are
  listed in the notification by name, size and sniffed type, and ``#files``
  mails them all, in batches under the same limit;
- **to customers** (an agent's relayed answer): the agent's files and inline
  images travel, except what must not: a sniffed executable, a type or
  extension listed in ``[relay] block_types``, and the quoted notification an
  Outlook reply attaches (``message/rfc822``, ``.msg``). Those stay on the
  ticket and the agent's transcript names them.

The bytes are read through ``services.blobs.get(sha256)``; nothing here
writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from mailgate.config import Config, Table
from mailgate.mail.compose import OutAttachment
from mailgate.storage.models import Attachment, Message

DEFAULT_MAX_BYTES = "10MB"
# What libmagic calls a program: never relayed to a customer, whatever the agent's client declared.
EXECUTABLE_TYPES = frozenset(
    {
        "application/x-dosexec",
        "application/x-msdownload",
        "application/vnd.microsoft.portable-executable",
        "application/x-executable",
        "application/x-pie-executable",
        "application/x-sharedlib",
        "application/x-mach-binary",
        "application/x-msi",
        "application/x-ms-shortcut",
        "application/x-elf",
    }
)
# The quoted history an Outlook reply may attach: the notification itself, never for the customer.
QUOTED_MAIL_TYPES = frozenset({"message/rfc822", "application/vnd.ms-outlook", "message/partial"})


@dataclass(frozen=True)
class Settings:
    max_bytes: int
    block_types: frozenset[str]  # MIME types ("application/zip") and extensions (".js")


def settings(config: Config) -> Settings:
    """``[notify]`` and ``[relay]``, checked (a bad value raises ConfigError naming the key)."""
    notify = Table(config.raw.get("notify"), config.path, "notify")
    max_bytes = notify.size("max_attachment_bytes", DEFAULT_MAX_BYTES)
    notify.finish()
    relay = Table(config.raw.get("relay"), config.path, "relay")
    blocked = frozenset(t.strip().lower() for t in relay.str_list("block_types", []) if t.strip())
    relay.finish()
    return Settings(max_bytes=max_bytes, block_types=blocked)


@dataclass(frozen=True)
class Listed:
    """A file named in a mail instead of attached to it."""

    filename: str
    size: int
    sniffed_type: str
    reason: str = ""

    def as_context(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "size": format_size(self.size),
            "bytes": self.size,
            "type": self.sniffed_type,
            "reason": self.reason,
        }


def format_size(size: int) -> str:
    """A size as a person reads it: 512 B, 34 KB, 2.5 MB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size // 1024} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def files_of(session: Any, message: Message | None) -> list[Attachment]:
    if message is None or message.id is None:
        return []
    return list(message.attachments)  # a mail stored in this batch has them loaded: no query


def outgoing(blobs: Any, item: Attachment, inline: bool = False) -> OutAttachment:
    return OutAttachment(
        filename=item.filename or "attachment",
        content_type=item.content_type,
        data=blobs.get(item.sha256),
        content_id=item.content_id.strip("<>") if inline else "",
        inline=inline,
    )


def batches(items: Sequence[Attachment], max_bytes: int) -> tuple[list[list[Attachment]], list[Attachment]]:
    """The files in order, grouped so each group stays under ``max_bytes``; a file over it alone is left out."""
    groups: list[list[Attachment]] = []
    too_big: list[Attachment] = []
    current: list[Attachment] = []
    total = 0
    for item in items:
        if item.size > max_bytes:
            too_big.append(item)
            continue
        if current and total + item.size > max_bytes:
            groups.append(current)
            current, total = [], 0
        current.append(item)
        total += item.size
    if current:
        groups.append(current)
    return groups, too_big


def for_agents(services: Any, session: Any, message: Message | None) -> tuple[list[OutAttachment], list[Listed]]:
    """The customer's files for one notification: attached while the total fits, listed after that."""
    limit = settings(services.config).max_bytes
    attached: list[OutAttachment] = []
    listed: list[Listed] = []
    total = 0
    for item in files_of(session, message):
        if not listed and total + item.size <= limit:
            attached.append(outgoing(services.blobs, item))
            total += item.size
        else:
            listed.append(Listed(item.filename or "attachment", item.size, item.sniffed_type or item.content_type))
    return attached, listed


MAX_FILE_MAILS = 20  # one #files sends at most this many mails


def customer_files(session: Any, ticket_id: int) -> list[Attachment]:
    """Every file the customer's mails brought into the ticket, oldest first."""
    return list(
        session.scalars(
            select(Attachment)
            .join(Message, Attachment.message_pk == Message.id)
            .where(Message.ticket_id == ticket_id, Message.direction == "in")
            .order_by(Attachment.id)
        ).all()
    )


def file_mails(services: Any, session: Any, ticket_id: int) -> tuple[list[list[OutAttachment]], list[Listed]]:
    """The ticket's files for ``#files``: batches under the limit, and the files no mail can carry."""
    limit = settings(services.config).max_bytes
    groups, too_big = batches(customer_files(session, ticket_id), limit)
    left = [item for group in groups[MAX_FILE_MAILS:] for item in group] + too_big
    sent = [[outgoing(services.blobs, item) for item in group] for group in groups[:MAX_FILE_MAILS]]
    return sent, [Listed(i.filename or "attachment", i.size, i.sniffed_type or i.content_type) for i in left]


def blocked_reason(item: Attachment, blocked: Iterable[str]) -> str:
    """Why a file of the agent must not reach the customer, or ""."""
    declared, sniffed = item.content_type.lower(), (item.sniffed_type or "").lower()
    name = (item.filename or "").lower()
    if declared in QUOTED_MAIL_TYPES or sniffed in QUOTED_MAIL_TYPES or name.endswith((".msg", ".eml")):
        return "a quoted mail"
    if sniffed in EXECUTABLE_TYPES:
        return f"an executable ({sniffed})"
    for entry in blocked:
        if entry.startswith(".") and name.endswith(entry):
            return f"{entry} files are blocked ([relay] block_types)"
        if entry in (declared, sniffed):
            return f"{entry} is blocked ([relay] block_types)"
    return ""


def for_customer(services: Any, session: Any, message: Message, html: str) -> tuple[list[OutAttachment], list[Listed]]:
    """The agent's files for the customer's copy: (relayed, kept on the ticket with the reason).

    An inline image travels when the answer's HTML shows it (``cid:``); one the cut history showed stays.
    """
    blocked = settings(services.config).block_types
    relayed: list[OutAttachment] = []
    kept: list[Listed] = []
    for item in files_of(session, message):
        cid = item.content_id.strip("<>")
        shown = bool(cid and html and f"cid:{cid}" in html)
        if cid and html and not shown and item.content_type.startswith("image/"):
            continue  # an image of the quoted history
        reason = blocked_reason(item, blocked)
        if reason:
            kept.append(
                Listed(item.filename or "attachment", item.size, item.sniffed_type or item.content_type, reason)
            )
            continue
        relayed.append(outgoing(services.blobs, item, inline=shown))
    return relayed, kept
