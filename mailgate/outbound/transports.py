"""The transports a row is delivered by: the smarthost over SMTP, or the ``sent`` maildir.

Over SMTP the smarthost's 250 to DATA is the delivery: what QUIT answers, or a
connection that drops after the 250, changes nothing (``on_delivered`` is
called right after the 250, so the row is marked sent before QUIT is said).
The maildir names each file after its row (:func:`delivery_key`) and creates
it with ``O_EXCL``, so a row is never written twice, even across a crash.

:class:`Sender` is the seam: tests put a recorder in the services instead of
patching smtplib.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from mailgate.config import Config, OutboundConfig
from mailgate.errors import PermanentDeliveryError, TemporaryDeliveryError
from mailgate.fsutil import create_synced, fsync_dir

log = logging.getLogger("mailgate.sender")


Delivered = Callable[[dict[str, str]], None]


class Sender(Protocol):
    """A transport. One that can never deliver a key twice may say so with ``once_per_key = True``: the
    sweep then claims its rows a round at a time and records them in one commit (outbound.sender)."""

    def send(
        self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, key: str = "", on_delivered: Delivered | None = None
    ) -> dict[str, str]:
        """Deliver one mail; return the recipients refused while others were accepted ({address: reply}).

        ``key`` names this delivery for good (its outbox row): a sender that can see an earlier delivery of
        the same key reports it delivered instead of delivering it twice. A sender that still has work after
        the delivery (an SMTP QUIT) calls ``on_delivered`` first, so the row is recorded before it.
        Raises TemporaryDeliveryError (try again later) or PermanentDeliveryError (give up); anything raised
        after ``on_delivered`` was called does not undo the delivery.
        """
        ...


class SmtpSender:
    """Hands mail to ``[outbound] smarthost`` with optional STARTTLS and AUTH."""

    def __init__(self, outbound: OutboundConfig, local_hostname: str) -> None:
        host, _, port = outbound.smarthost.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.outbound = outbound
        self.local_hostname = local_hostname

    def send(
        self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, key: str = "", on_delivered: Delivered | None = None
    ) -> dict[str, str]:
        options = ["SMTPUTF8"] if not all(a.isascii() for a in (mail_from, *rcpt_tos)) else []
        client = smtplib.SMTP(local_hostname=self.local_hostname, timeout=self.outbound.timeout)
        try:
            refused = self._transfer(client, mail_from, rcpt_tos, raw, options)
        except BaseException:
            client.close()
            raise
        result = {address: f"{code} {_text(message)}" for address, (code, message) in refused.items()}
        try:
            if on_delivered is not None:
                on_delivered(result)  # the 250 to DATA was the delivery: record it before saying goodbye
        finally:
            _quit_quietly(client, key)  # nothing here can undo the delivery
        return result

    def _transfer(
        self, client: smtplib.SMTP, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, options: list[str]
    ) -> dict[str, tuple[int, bytes]]:
        """Everything up to the DATA reply; an SMTP failure here means not delivered, as a Delivery error."""
        try:
            code, greeting = client.connect(self.host, self.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            client.ehlo()
            if self.outbound.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if self.outbound.username:
                client.login(self.outbound.username, self.outbound.password)
            return client.sendmail(mail_from, list(rcpt_tos), raw, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{a}: {c} {_text(m)}" for a, (c, m) in exc.recipients.items())
            if all(c >= 500 for c in codes):
                raise PermanentDeliveryError(f"all recipients refused: {text}", min(codes)) from None
            raise TemporaryDeliveryError(f"recipients refused for now: {text}", min(codes)) from None
        except smtplib.SMTPAuthenticationError as exc:  # our config, not the mail: keep it and retry
            raise TemporaryDeliveryError(
                f"smarthost refused our login: {exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code
            ) from None
        except smtplib.SMTPResponseException as exc:
            error_class = PermanentDeliveryError if exc.smtp_code >= 500 else TemporaryDeliveryError
            raise error_class(f"{exc.smtp_code} {_text(exc.smtp_error)}", exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryDeliveryError(f"{type(exc).__name__}: {exc}") from None


def _quit_quietly(client: smtplib.SMTP, key: str) -> None:
    """Say QUIT after a delivery: a 421, a 5xx or a dropped connection here is logged, never a failure."""
    try:
        code, reply = client.docmd("QUIT")
        if code != 221:
            log.info(
                "smarthost answered QUIT oddly after the delivery; delivered all the same",
                extra={"outbox": key, "reply": f"{code} {_text(reply)}"},
            )
    except (smtplib.SMTPException, OSError) as exc:
        log.info(
            "connection lost after the delivery; delivered all the same",
            extra={"outbox": key, "error": f"{type(exc).__name__}: {exc}"},
        )
    finally:
        client.close()


def _text(message: Any) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


class MaildirSender:
    """With no smarthost: each mail lands in ``data_dir/sent``, a maildir, as a local MDA would write it.

    The file is named after the delivery's key (its outbox row) and linked into ``new/`` without
    overwriting, so a crash between the write and the commit that marks the row sent cannot make a
    second copy: when the row comes round again its file is already there (in ``new/``, or in ``cur/``
    once a mail client has read it) and the row counts as delivered.
    """

    once_per_key = True  # the sweep may claim a round at once and record it in one commit (outbound.sender)

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(
        self, mail_from: str, rcpt_tos: Sequence[str], raw: bytes, key: str = "", on_delivered: Delivered | None = None
    ) -> dict[str, str]:
        envelope = f"Return-Path: <{mail_from}>\n" + "".join(f"Delivered-To: {r}\n" for r in rcpt_tos)
        name = _maildir_name(key) if key else f"{time.time_ns()}.{uuid.uuid4().hex}"
        try:
            for sub in ("tmp", "new", "cur"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
            if self._written(name):
                log.info("maildir file of this row already written; counted as delivered", extra={"outbox": key})
                return {}
            self._write_once(name, envelope.encode() + raw.replace(b"\r\n", b"\n"))
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write to {self.directory}: {exc}") from None
        return {}

    def _written(self, name: str) -> bool:
        if (self.directory / "new" / name).exists() or (self.directory / "cur" / name).exists():
            return True
        prefix = name + ":"  # in cur/ a mail client adds its flags: "<name>:2,S"
        return any(entry.startswith(prefix) for entry in os.listdir(self.directory / "cur"))

    def _write_once(self, name: str, data: bytes) -> None:
        """Write in tmp/ (exclusively, fsynced), then link into new/: the link fails rather than overwrite."""
        tmp = self.directory / "tmp" / f"{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        create_synced(tmp, data)
        try:
            os.link(tmp, self.directory / "new" / name)
        except FileExistsError:
            log.info("maildir file of this row written meanwhile; counted as delivered", extra={"file": name})
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.directory / "new")


def _maildir_name(key: str) -> str:
    """A maildir file name from a delivery key: no "/" and no ":" (the maildir flag separator)."""
    return key.replace("/", "_").replace(":", "_")


def delivery_key(outbox_id: int, message_id: str) -> str:
    """The stable name of one outbox row's delivery: its id and a digest of its Message-ID."""
    return f"{outbox_id}.{hashlib.sha256(message_id.encode()).hexdigest()[:16]}"


def default_sender(config: Config) -> Sender:
    if config.outbound.smarthost:
        return SmtpSender(config.outbound, config.hostname)
    return MaildirSender(config.sent_dir)
