"""Database tables (SQLAlchemy 2). Schema changes go through Alembic migrations.

Times are stored in UTC and come back as aware datetimes on every backend.
Long, attacker-controlled keys (Message-IDs) are looked up by their sha256,
so an index never holds a 2,000-character header.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    insert,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship
from sqlalchemy.sql import column, table

from mailgate.storage import direct

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Counter(Base):
    """Named counters taken with UPDATE … RETURNING: ticket numbers on SQLite (PostgreSQL: a sequence), digest days."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    queue: Mapped[str] = mapped_column(String(100), index=True)
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    spam: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str] = mapped_column(String(20), default="en")
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    assignee: Mapped[str | None] = mapped_column(String(320), nullable=True)
    follows_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pending_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sla_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sla_escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution_warned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution_escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    time_spent: Mapped[int] = mapped_column(Integer, default=0)
    csat: Mapped[str | None] = mapped_column(String(20), nullable=True)

    customer: Mapped[Customer] = relationship(lazy="joined")
    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )


class Message(Base):
    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(10))  # in, out, note
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)  # Message-ID + author + content digest
    message_id: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")  # mailgate.mail.sameness
    in_reply_to: Mapped[str] = mapped_column(Text, default="")
    references: Mapped[str] = mapped_column(Text, default="")
    from_addr: Mapped[str] = mapped_column(String(320), default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    to_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    cc_addrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str] = mapped_column(Text, default="")
    new_text: Mapped[str] = mapped_column(Text, default="")
    raw_sha256: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(20), default="")
    author: Mapped[str] = mapped_column(String(320), default="")
    parse_defects: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    ticket: Mapped[Ticket] = relationship(back_populates="messages", foreign_keys=[ticket_id])
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", order_by="Attachment.id")


# SQLite's full-text index of the messages (FTS5, migration 0002). A new message's index row is written
# by a statement of its own, not by a trigger (migration 0009 says why): for every message the unit of
# work flushes, and for every one rows.insert_now writes, which fires this same event.
_MESSAGES_FTS = insert(table("messages_fts", column("rowid"), column("subject"), column("text")))


@event.listens_for(Message, "after_insert")
def _index_new_message(_mapper: Mapper[Message], conn: Connection, message: Message) -> None:
    if conn.dialect.name == "sqlite":
        direct.write(conn, _MESSAGES_FTS, {"rowid": message.id, "subject": message.subject, "text": message.text})


class Attachment(Base):
    __tablename__ = "attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_pk: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    sniffed_type: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str] = mapped_column(Text, default="")
    inline: Mapped[bool] = mapped_column(Boolean, default=False)
    part_of: Mapped[str] = mapped_column(Text, default="", server_default="")  # the attached message it was in

    message: Mapped[Message] = relationship(back_populates="attachments")


class MessageRef(Base):
    """Every Message-ID we stored or sent, and its ticket: the In-Reply-To/References index."""

    __tablename__ = "message_refs"
    msgid_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)

    # Set instead of the ids when the rows are not flushed yet (as Event's): one flush writes them all.
    ticket: Mapped[Ticket] = relationship(foreign_keys=[ticket_id])
    message: Mapped[Message | None] = relationship(foreign_keys=[message_pk])


class Event(Base):
    """The audit trail: one row per change, with who or what decided it."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True, index=True)
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    actor: Mapped[str] = mapped_column(String(320), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # Set instead of the ids when the ticket or message is not flushed yet: one flush writes all three.
    ticket: Mapped[Ticket | None] = relationship(foreign_keys=[ticket_id])
    message: Mapped[Message | None] = relationship(foreign_keys=[message_pk])


class Watcher(Base):
    __tablename__ = "watchers"
    __table_args__ = (UniqueConstraint("ticket_id", "address"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    address: Mapped[str] = mapped_column(String(320))


class Outbox(Base):
    """Mail to send, written in the transaction of the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True, index=True)
    message_pk: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(50))
    message_id: Mapped[str] = mapped_column(Text, default="")
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, default=list)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, sent, failed, held
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)  # counted by the loop limits (0002)
    recipient: Mapped[str] = mapped_column(String(320), default="", index=True)  # first recipient (0002)


class Suppression(Base):
    """Addresses that get no automatic mail until ``until`` (hard bounces, blocklist)."""

    __tablename__ = "suppressions"
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SenderList(Base):
    """Allow/block list entries (address or @domain) maintained by #spam / #notspam."""

    __tablename__ = "sender_lists"
    entry: Mapped[str] = mapped_column(String(320), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(10))  # allow, block
    actor: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ImapState(Base):
    """Where each IMAP account/folder stopped: UIDVALIDITY and the last stored UID."""

    __tablename__ = "imap_state"
    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    folder: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger, default=0)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Blob(Base):
    """A blob kept in the database (``[blobs] backend = "database"``): its sha256, size and chunk count (0007)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(Integer, default=0)


class BlobChunk(Base):
    """One chunk of a blob, in order: a 25 MB attachment is read and written a chunk at a time (0007)."""

    __tablename__ = "blob_chunks"
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Installation(Base):
    """Values shared by every daemon on one database: the signing key and its fingerprint (0007)."""

    __tablename__ = "installation"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")
