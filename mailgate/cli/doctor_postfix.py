"""The doctor's Postfix checks: the settings in front of mailgate that silently break it.

Read with ``postconf`` (and ``postmap -q`` for the transport table) from the
instance named by ``--postfix-config DIR``, else ``$MAIL_CONFIG``, else
Postfix's default. Nothing is checked when Postfix is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

from mailgate.cli.doctor_checks import Check
from mailgate.config import Config

RECIPE = "see docs/postfix.md"


def checks(config: Config, directory: str | None = None) -> Iterator[Check]:
    postconf = shutil.which("postconf") or ("/usr/sbin/postconf" if os.path.exists("/usr/sbin/postconf") else None)
    if postconf is None:
        return
    named = directory or os.environ.get("MAIL_CONFIG") or None
    if not os.path.exists(os.path.join(named or "/etc/postfix", "main.cf")):
        if named is not None:
            yield Check("postfix", False, f"no main.cf in {named}", "--postfix-config names a Postfix config directory")
        return  # Postfix installed but not configured: nothing in front of mailgate yet
    directory = named
    values = _postconf(postconf, directory, "recipient_delimiter", "message_size_limit", "transport_maps")
    if values is None:
        return
    yield _delimiter(values.get("recipient_delimiter", ""))
    yield _size(values.get("message_size_limit", ""), config.smtp.max_message_size)
    yield from _transport(postconf, directory, values.get("transport_maps", ""), config)


def _delimiter(value: str) -> Check:
    if "+" not in value:
        return Check(
            "postfix_delimiter",
            False,
            f"recipient_delimiter is {value!r}: signed reply addresses (support+12.mac@…) bounce",
            "postconf -e 'recipient_delimiter = +'",
        )
    return Check("postfix_delimiter", True, f"recipient_delimiter {value!r} keeps support+… addresses")


def _size(value: str, ours: int) -> Check:
    try:
        limit = int(value)
    except ValueError:
        return Check("postfix_size", False, f"message_size_limit {value!r} is not a number", RECIPE)
    if limit and limit < ours:
        return Check(
            "postfix_size",
            False,
            f"message_size_limit {limit} is below mailgate's max_message_size {ours}: "
            "Postfix refuses mail mailgate would take",
            f"postconf -e 'message_size_limit = {ours + 1_000_000}'",
        )
    return Check("postfix_size", True, f"message_size_limit {limit or 'unlimited'} >= {ours}")


def _transport(postconf: str, directory: str | None, maps: str, config: Config) -> Iterator[Check]:
    """Each domain we accept must be routed to our door (smtp:[host]:port) or to a pipe transport."""
    door = f"[{config.smtp.host}]:{config.smtp.port}"
    domains = sorted({entry.rpartition("@")[2].lower() for entry in config.support.accept if "@" in entry})
    postmap = os.path.join(os.path.dirname(postconf), "postmap")
    tables = [t.strip() for t in maps.replace(",", " ").split() if ":" in t]
    for domain in domains:
        found = ""
        for table in tables:
            found = _postmap(postmap, directory, domain, table)
            if found:
                break
        if not found:
            yield Check(
                "postfix_transport",
                False,
                f"no transport_maps entry for {domain}: Postfix delivers it elsewhere",
                f"{domain} smtp:{door} in the transport table, and {domain} in relay_domains; " + RECIPE,
            )
            continue
        nexthop = found.split(":", 1)
        if nexthop[0] in ("smtp", "lmtp") and nexthop[1:] and nexthop[1] != door:
            yield Check(
                "postfix_transport",
                False,
                f"{domain} goes to {found}, not to the door {door}",
                f"{domain} smtp:{door} in the transport table",
            )
        else:
            yield Check("postfix_transport", True, f"{domain} → {found}")


def _postconf(postconf: str, directory: str | None, *names: str) -> dict[str, str] | None:
    command = [postconf, *(["-c", directory] if directory else []), *names]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    values = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def _postmap(postmap: str, directory: str | None, key: str, table: str) -> str:
    command = [postmap, *(["-c", directory] if directory else []), "-q", key, table]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
