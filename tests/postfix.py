"""A real, private Postfix instance in front of mailgate, for the end-to-end tests of docs/postfix.md.

Each instance has a config directory, a queue, a data directory and a log of
its own under the system temp dir, listens on a free 127.0.0.1 port, never
looks up DNS, and runs its master in the foreground (``master -d``) as
a child of the test, stopped by its own PID. Mail for ``customer.example``
is delivered by Postfix's ``virtual`` agent into maildirs under the
instance's own ``mail/`` folder (owned by ``nobody``), so acknowledgments can
be read back as a customer's mailbox would hold them.

Postfix runs its daemons as root-started processes, so these tests need
root (CI runs as root); they skip otherwise, or when Debian's ``postfix`` is
not installed.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
MASTER = "/usr/lib/postfix/sbin/master"
MASTER_CF = Path("/etc/postfix/master.cf")


def available() -> bool:
    return os.geteuid() == 0 and os.access(MASTER, os.X_OK) and MASTER_CF.exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Postfix:
    """One private instance; ``main`` and ``master`` are the recipe's lines, ``transport`` its table."""

    def __init__(
        self,
        main: str = "",
        master: str = "",
        transport: str = "",
        mailboxes: tuple[str, ...] = ("alice@customer.example",),
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mg-pf-", dir="/tmp"))
        self.root.chmod(0o755)
        self.etc, self.queue, self.data, self.mail = (self.root / n for n in ("etc", "queue", "data", "mail"))
        for folder in (self.etc, self.queue, self.data, self.mail):
            folder.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(self.mail, nobody.pw_uid, nobody.pw_gid)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, -1)
        self.port = free_port()
        self.log_file = self.root / "maillog"
        (self.etc / "transport").write_text(transport)
        (self.etc / "vmailbox").write_text("".join(f"{m} {m.split('@')[0]}/\n" for m in mailboxes))
        (self.etc / "main.cf").write_text(self._main_cf(nobody) + main.replace("/etc/postfix", str(self.etc)))
        (self.etc / "master.cf").write_text(self._master_cf() + master)
        self.proc: subprocess.Popen[bytes] | None = None

    def _main_cf(self, nobody: pwd.struct_passwd) -> str:
        return f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = customer.example
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.etc}/vmailbox
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
virtual_minimum_uid = 100
maillog_file_prefixes = /var, /dev/stdout, {self.root}
maillog_file = {self.log_file}
smtputf8_enable = no
biff = no
minimal_backoff_time = 300s
maximal_backoff_time = 600s
"""

    def _master_cf(self) -> str:
        """Debian's master.cf, unchrooted (the instance has no chroot jail), its smtpd on our port."""
        lines = []
        for line in MASTER_CF.read_text().splitlines():
            fields = line.split()
            if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"127.0.0.1:{self.port}"
                fields[4] = "n"
                line = "  ".join(fields)
            lines.append(line)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 60) -> Postfix:
        subprocess.run([POSTFIX, "-c", str(self.etc), "check"], check=True, capture_output=True, timeout=60)
        # the master itself, not detached (-d): its PID is ours to stop, and its children go with it
        self.proc = subprocess.Popen(
            [MASTER, "-c", str(self.etc), "-d"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    if sock.recv(100).startswith(b"220"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"postfix exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise TimeoutError(f"postfix did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def flush(self) -> None:
        subprocess.run([POSTQUEUE, "-c", str(self.etc), "-f"], check=True, capture_output=True, timeout=60)
        self._flushed = time.monotonic()

    def flush_every(self, seconds: float) -> bool:
        """Flush if the last flush is older than ``seconds``; always False, so it can lead a poll's predicate."""
        if time.monotonic() - getattr(self, "_flushed", 0.0) >= seconds:
            self.flush()
        return False

    def queued(self) -> list[dict[str, object]]:
        done = subprocess.run([POSTQUEUE, "-c", str(self.etc), "-j"], capture_output=True, timeout=60, check=False)
        return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]

    def mailbox(self, address: str) -> list[bytes]:
        """The mails delivered to a customer's maildir, oldest first."""
        new = self.mail / address.split("@")[0] / "new"
        if not new.exists():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns)]

    def statuses(self, recipient: str) -> list[str]:
        """Postfix's delivery verdicts for one recipient, from its log: sent, deferred, bounced."""
        pattern = re.compile(rf"to=<{re.escape(recipient)}>.*? status=(\w+)")
        return [m.group(1) for m in pattern.finditer(self.log())]
