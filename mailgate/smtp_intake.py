"""The SMTP door (aiosmtpd): accept for our addresses, spool durably, then say 250.

Thin on purpose. RCPT outside ``[support] accept`` gets 550 (never an open
relay); DATA over ``max_message_size`` gets 552 from aiosmtpd itself; a DATA
that is not a mail at all gets 550; a spool that cannot be written gets 451,
so the sending server keeps the mail and retries. 250 is sent only after the
raw bytes and their directory entry are fsynced. Nothing else happens here:
the pipeline worker picks the entry up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from mailgate.config import Config, SupportConfig
from mailgate.errors import SpoolError
from mailgate.intake import looks_like_mail
from mailgate.spool import Spool, SpoolMeta

log = logging.getLogger("mailgate.smtp")


class IntakeHandler:
    def __init__(self, support: SupportConfig, spool: Spool, on_spooled: Callable[[], None] = lambda: None,
                 counter: Callable[[str], None] = lambda verdict: None) -> None:
        self.support = support
        self.spool = spool
        self.on_spooled = on_spooled
        self.count = counter

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.support.accepts(address):
            self.count("rejected")
            return f"550 5.1.1 <{address}>: recipient not accepted here"
        if len(envelope.rcpt_tos) >= 100:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if not looks_like_mail(raw):
            self.count("refused")
            return "550 5.6.0 Message refused: it has no header (not a mail)"
        meta = SpoolMeta(id="", source="smtp", mail_from=envelope.mail_from or "",
                         rcpt_tos=list(envelope.rcpt_tos), peer=_peer(session))
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.spool.put, raw, meta)
        except SpoolError as exc:
            log.error("cannot spool message; answered 451", extra={"error": str(exc), "peer": meta.peer})
            self.count("tempfail")
            return "451 4.3.0 Cannot store the message right now; try again later"
        self.count("accepted")
        self.on_spooled()
        return f"250 2.0.0 Ok: queued as {meta.id}"


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


def smtp_factory(config: Config, handler: IntakeHandler) -> Callable[[], SMTP]:
    """A protocol factory for ``loop.create_server``, with the limits from config."""
    smtp_class = type("IntakeSMTP", (SMTP,), {"line_length_limit": config.smtp.line_length_limit})

    def factory() -> SMTP:
        return smtp_class(handler, data_size_limit=config.smtp.max_message_size, enable_SMTPUTF8=True,
                          hostname=config.hostname, ident="mailgate ESMTP", timeout=config.smtp.timeout,
                          loop=asyncio.get_running_loop())

    return factory
