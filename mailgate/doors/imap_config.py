"""The ``[[imap]]`` accounts of the config file, checked once at start.

Each account is a mailbox mailgate fetches from (see ``docs/imap.md``)::

    [[imap]]
    name = "support"                 # how logs, state and `mailgate imap test` call it
    host = "imap.example.com"
    port = 993                       # default: 993 with tls, else 143
    tls = "tls"                      # tls (implicit), starttls, or none (loopback only)
    username = "support@example.com"
    password_file = "secrets/imap"   # or password = "..."
    folder = "INBOX"
    after_store = "move"             # move (to move_to), flag (\\Seen), delete (expunge)
    move_to = "Processed"            # created if missing
    poll_interval = "60s"            # without IDLE: how often to look; with IDLE: longest quiet time

Errors name the file and the key (``config.toml: imap[1].tls: expected one of …``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from mailgate.config import Config, Table

TLS_MODES = ("tls", "starttls", "none")
AFTER_STORE = ("move", "flag", "delete")


@dataclass(frozen=True)
class ImapAccount:
    name: str
    host: str
    port: int
    tls: str
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    after_store: str = "move"
    move_to: str = "Processed"
    poll_interval: float = 60.0

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_accounts(config: Config) -> tuple[ImapAccount, ...]:
    """Every ``[[imap]]`` table of the config; raises ConfigError naming file and key."""
    root = Table(config.raw, config.path, "")
    accounts: list[ImapAccount] = []
    for t in root.tables("imap"):
        accounts.append(_account(t, config))
        t.finish()
    seen_names: set[str] = set()
    seen_folders: set[tuple[str, int, str, str]] = set()
    for index, account in enumerate(accounts):
        where = Table({}, config.path, f"imap[{index}]")
        if account.name in seen_names:
            raise where.error("name", f"two [[imap]] accounts are called {account.name!r}")
        mailbox = (account.host.lower(), account.port, account.username, account.folder)
        if mailbox in seen_folders:
            raise where.error(
                "folder",
                f"another [[imap]] account already reads {account.folder!r} of {account.username} on {account.server}",
            )
        seen_names.add(account.name)
        seen_folders.add(mailbox)
    return tuple(accounts)


def _account(t: Table, config: Config) -> ImapAccount:
    host = t.str("host")
    if not host.strip() or " " in host:
        raise t.error("host", f"expected a host name or address, got {host!r}")
    tls = t.str("tls", "tls", choices=TLS_MODES)
    if tls == "none" and not is_loopback(host):
        raise t.error(
            "tls",
            '"none" sends the password in clear and is only allowed for a loopback host '
            '(127.0.0.1, ::1, localhost); use "tls" or "starttls"',
        )
    port = t.int("port", 993 if tls == "tls" else 143, minimum=1)
    if port > 65535:
        raise t.error("port", f"expected a port number up to 65535, got {port}")
    username = t.str("username")
    if not username:
        raise t.error("username", "must not be empty")
    password = _password(t, config)
    folder = t.str("folder", "INBOX")
    after_store = t.str("after_store", "move", choices=AFTER_STORE)
    if t.has("move_to") and after_store != "move":
        raise t.error("move_to", f'is only used with after_store = "move" (after_store is {after_store!r})')
    move_to = t.str("move_to", "Processed")
    for key, value in (("folder", folder), ("move_to", move_to)):
        if not value or len(value) > 200 or any(ord(c) < 32 for c in value):
            raise t.error(key, f"expected a folder name of 1 to 200 printable characters, got {value!r}")
    if after_store == "move" and move_to == folder:
        raise t.error("move_to", f"must differ from folder ({folder!r})")
    poll_interval = t.duration("poll_interval", "60s")
    if poll_interval < 1:
        raise t.error("poll_interval", f"expected at least 1s, got {poll_interval}s")
    name = t.str("name", f"{username}@{host}")
    if not name or len(name) > 200:
        raise t.error("name", f"expected 1 to 200 characters, got {name!r}")
    return ImapAccount(
        name=name,
        host=host,
        port=port,
        tls=tls,
        username=username,
        password=password,
        folder=folder,
        after_store=after_store,
        move_to=move_to,
        poll_interval=poll_interval,
    )


def _password(t: Table, config: Config) -> str:
    if t.has("password") == t.has("password_file"):
        raise t.error("password", "give either password or password_file (one of them)")
    if t.has("password"):
        password = t.str("password")
    else:
        path = t.path("password_file", "", config.base_dir)
        try:
            password = path.read_text().strip("\r\n")
        except OSError as exc:
            raise t.error("password_file", f"cannot read {path}: {exc.strerror}") from None
    if not password:
        raise t.error("password_file" if t.has("password_file") else "password", "the password is empty")
    return password
