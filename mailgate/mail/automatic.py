"""Is a mail from a person, or automatic? And which kind of automatic?

The kinds, from the strongest evidence down:

- ``bounce``: a delivery status notification (RFC 3464 ``multipart/report;
  report-type=delivery-status``), or a report from MAILER-DAEMON/postmaster
  that carries a report part (the returned message or its headers) — a mail
  from such an address with a human body and no report part is a person's;
- ``feedback``: an abuse/feedback report (ARF, RFC 5965: ``report-type=feedback-report``);
- ``auto-reply``: RFC 3834 ``Auto-Submitted: auto-replied``, and the markers
  autoresponders write (``X-Autoreply``, ``X-Autorespond``, ``Precedence:
  auto_reply``, Exchange's ``X-Auto-Response-Suppress`` echoed on its
  out-of-office answers);
- ``auto-generated``: any other ``Auto-Submitted`` value (monitoring alerts,
  notifications): classified, but such mail may well be a case to work on;
- ``human``: everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

REPORT_PARTS = frozenset(
    {
        "message/delivery-status",
        "message/rfc822",
        "text/rfc822-headers",
        "message/feedback-report",
        "message/global-delivery-status",
        "message/global",
    }
)
HELD_KINDS = frozenset({"bounce", "feedback", "auto-reply"})  # the kinds that open no ticket by default
_SYSTEM_SENDERS = ("mailer-daemon", "postmaster")
_AUTORESPONDER = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-response-suppress")


@dataclass(frozen=True)
class Classification:
    kind: str  # human | bounce | feedback | auto-reply | auto-generated
    reason: str = ""

    @property
    def automatic(self) -> bool:
        return self.kind != "human"


def classify(header: Callable[[str], str], part_types: Sequence[str], sender: str) -> Classification:
    """Classify by the headers (``header(name)`` gives the first value), the MIME part types and the sender."""
    ctype = header("content-type").lower()
    if "multipart/report" in ctype and "feedback-report" in ctype:
        return Classification("feedback", "multipart/report; report-type=feedback-report (RFC 5965)")
    if "multipart/report" in ctype and "delivery-status" in ctype:
        return Classification("bounce", "multipart/report; report-type=delivery-status (RFC 3464)")
    if "message/feedback-report" in part_types:
        return Classification("feedback", "a message/feedback-report part")
    local = sender.rpartition("@")[0].lower()
    if local in _SYSTEM_SENDERS and any(t in REPORT_PARTS for t in part_types):
        return Classification("bounce", f"from {local} with a report part")
    auto = header("auto-submitted").split(";", 1)[0].strip().lower()
    if auto == "auto-replied":
        return Classification("auto-reply", "Auto-Submitted: auto-replied (RFC 3834)")
    for name in _AUTORESPONDER:
        if header(name):
            return Classification("auto-reply", f"{name} header")
    if header("precedence").strip().lower() == "auto_reply":
        return Classification("auto-reply", "Precedence: auto_reply")
    if auto and auto != "no":
        return Classification("auto-generated", f"Auto-Submitted: {auto}")
    return Classification("human")
