"""The one exception tree of mailgate.

::

    MailgateError
    ├── ConfigError (ValueError)        an admin-edited file is wrong: names file, key/line, expectation
    ├── SpoolError (OSError)            a message could not be made durable: the sender must retry (4xx / EX_TEMPFAIL)
    ├── NotAMailError (ValueError)      input that is not a mail at all: refuse (5xx / EX_DATAERR)
    ├── DatabaseSchemaError             the database is not at the schema this code expects
    └── DeliveryError                   an outgoing mail failed; ``code`` keeps the SMTP code
        ├── TemporaryDeliveryError      4xx or a network failure: retry with backoff
        └── PermanentDeliveryError      5xx: give up, record on the ticket

The class decides what happens to the mail, as in Roundup's gateway: a
``SpoolError`` is answered "try later", a ``NotAMailError`` is refused, and any
other exception inside the pipeline is a bug: the spool entry is retried a few
times and then quarantined with its traceback.

``Problem`` is not an exception: it is one finding of a check (``rules check``,
``templates check``), several of which may be reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass


class MailgateError(Exception):
    """Base of every error mailgate raises on purpose."""


class ConfigError(MailgateError, ValueError):
    """An admin-edited file (config, rules, templates) is wrong.

    The message names the file, the key or line, and what was expected, so the
    admin can fix it from the one log line.
    """


class SpoolError(MailgateError, OSError):
    """The raw message could not be written durably; nothing was accepted."""


class NotAMailError(MailgateError, ValueError):
    """The input has nothing of a mail in it (empty, or no header at all)."""


class DatabaseSchemaError(MailgateError):
    """The database schema is older or newer than this code."""


class DeliveryError(MailgateError):
    """Sending a mail failed. ``code`` is the SMTP reply code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryDeliveryError(DeliveryError, ConnectionError):
    """Worth retrying later (4xx, refused connection, timeout)."""


class PermanentDeliveryError(DeliveryError):
    """Not worth retrying (5xx, or the mail is too old)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an admin-edited file, reported as ``file:line: message``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"
