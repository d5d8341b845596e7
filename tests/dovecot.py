"""A real, throwaway Dovecot IMAP server for the IMAP tests.

Each instance lives in a fresh directory under the system temp dir (short
paths: Dovecot's unix sockets must fit in 108 bytes) with its own config,
runtime dir, state dir, log and maildirs. It listens on a free 127.0.0.1
port, authenticates users from a passwd-file (no system users), and runs
as a child process (``dovecot -F``), so a test can stop it mid-fetch and
start it again on the same port.

Dovecot never lets mail processes run as root, so when the tests run as
root the maildirs belong to ``nobody`` and Dovecot switches to it; as an
ordinary user everything runs as that user.

Mail is put in and read back over IMAP with the standard library's
``imaplib``, the way another mail client would, never through mailgate.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def available() -> bool:
    return os.access(DOVECOT, os.X_OK)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _user_or(name: str, fallback: str) -> str:
    try:
        pwd.getpwnam(name)
        return name
    except KeyError:
        return fallback


class Dovecot:
    """One Dovecot instance. ``users`` maps user names to passwords.

    ``tls=True`` adds a self-signed certificate (for 127.0.0.1 and localhost),
    STARTTLS on ``port`` and implicit TLS on ``tls_port``. ``capability``
    overrides what the server announces after login (e.g. without IDLE and
    MOVE, to exercise polling and COPY+EXPUNGE).
    """

    def __init__(self, users: dict[str, str] | None = None, *, tls: bool = False, capability: str = "") -> None:
        self.users = users or {"support": "secret"}
        self.user = next(iter(self.users))
        self.tls = tls
        self.capability = capability
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.cert = self.root / "cert.pem"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    # -- lifecycle -------------------------------------------------------
    def _write_config(self) -> None:
        root = self.root
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        passwd = root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        passwd.chmod(0o644)
        lines = [
            f"base_dir = {root}/run",
            f"state_dir = {root}/state",
            f"log_path = {root}/dovecot.log",
            "protocols = imap",
            "listen = 127.0.0.1",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            "login_trusted_networks = 127.0.0.0/8",
            "auth_failure_delay = 0",
            "mail_fsync = never",
            "mail_max_userip_connections = 50",
            f"mail_location = maildir:{root}/mail/%u",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {passwd}",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = home={root}/mail/%u",
            "}",
        ]
        if os.geteuid() == 0:
            mail_user = _user_or("nobody", "daemon")
            uid = pwd.getpwnam(mail_user).pw_uid
            gid = pwd.getpwnam(mail_user).pw_gid
            os.chown(root / "mail", uid, gid)
            lines += [
                f"mail_uid = {mail_user}",
                f"mail_gid = {grp.getgrgid(gid).gr_name}",
                f"default_login_user = {_user_or('dovenull', mail_user)}",
                f"default_internal_user = {_user_or('dovecot', mail_user)}",
            ]
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            lines += [
                f"default_login_user = {me}",
                f"default_internal_user = {me}",
                f"default_internal_group = {group}",
                "service anvil {",
                "  chroot =",
                "}",
            ]
        login = [
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
        ]
        if self.tls:
            self._make_certificate()
            lines += ["ssl = yes", f"ssl_cert = <{self.cert}", f"ssl_key = <{root / 'key.pem'}"]
            login += ["    address = 127.0.0.1", f"    port = {self.tls_port}"]
        else:
            lines.append("ssl = no")
            login.append("    port = 0")
        login.append("  }")
        if os.geteuid() != 0:
            login.append("  chroot =")
        login.append("}")
        if self.capability:
            lines.append(f"imap_capability = {self.capability}")
        (root / "dovecot.conf").write_text("\n".join(lines + login) + "\n")

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                OPENSSL,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(self.root / "key.pem"),
                "-out",
                str(self.cert),
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self, timeout: float = 15) -> Dovecot:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"dovecot did not start:\n{self.log()}")

    def stop(self, timeout: float = 15) -> None:
        """Stop the server and cut every client connection, as stopping the service does.

        Like systemd stopping the service, every process of the instance (its
        own process group: it runs in a session of its own) gets SIGTERM at
        once; an imap process serving a client would otherwise outlive the
        master. Whatever is left after the master exited is killed.
        """
        if self.proc is None or self.proc.poll() is not None:
            return
        group = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- a mail client's view -------------------------------------------
    @contextlib.contextmanager
    def client(self, user: str | None = None) -> Iterator[imaplib.IMAP4]:
        user = user or self.user
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            conn.login(user, self.users[user])
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def append(self, user: str, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND one message; return its UID."""
        return self.append_many(user, [raw], folder)[0]

    def append_many(self, user: str, raws: Iterable[bytes], folder: str = "INBOX") -> list[int]:
        """APPEND messages over one connection; return their UIDs."""
        uids = []
        with self.client(user) as conn:
            if folder != "INBOX" and not self._exists(conn, folder):
                _ok(conn.create(_q(folder)))
            for raw in raws:
                typ, data = conn.append(_q(folder), None, None, raw)
                _ok((typ, data))
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                uids.append(int(match.group(1)) if match else 0)
        return uids

    @staticmethod
    def _exists(conn: imaplib.IMAP4, folder: str) -> bool:
        typ, data = conn.list('""', _q(folder))
        return typ == "OK" and any(d for d in data if d)

    def uids(self, folder: str = "INBOX", user: str | None = None) -> list[int]:
        """The UIDs in ``folder`` (empty when the folder does not exist)."""
        with self.client(user) as conn:
            if not self._exists(conn, folder):
                return []
            _ok(conn.select(_q(folder), readonly=True))
            typ, data = conn.uid("SEARCH", "ALL")
            _ok((typ, data))
            return [int(u) for u in (data[0] or b"").split()]

    def count(self, folder: str = "INBOX", user: str | None = None) -> int:
        return len(self.uids(folder, user))

    def status(self, folder: str = "INBOX", user: str | None = None) -> dict[str, int]:
        with self.client(user) as conn:
            typ, data = conn.status(_q(folder), "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)")
            _ok((typ, data))
            text = data[0].decode()
            return {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+)", text.rsplit("(", 1)[1])}

    def message_ids(self, folder: str = "INBOX", user: str | None = None) -> list[str]:
        """The Message-ID of every message in ``folder``, in UID order."""
        with self.client(user) as conn:
            if not self._exists(conn, folder):
                return []
            _ok(conn.select(_q(folder), readonly=True))
            typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            if typ != "OK":
                return []
            found = []
            for item in data:
                if isinstance(item, tuple):
                    match = re.search(rb"Message-ID:\s*(<[^>]*>)", item[1], re.IGNORECASE)
                    found.append(match.group(1).decode() if match else "")
            return found

    def flags(self, folder: str = "INBOX", user: str | None = None) -> dict[int, set[str]]:
        with self.client(user) as conn:
            _ok(conn.select(_q(folder), readonly=True))
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS)")
            result = {}
            for line in data if typ == "OK" else []:
                if isinstance(line, bytes) and (m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)):
                    result[int(m.group(1))] = set(m.group(2).decode().split())
            return result

    def expunge(self, uids: Iterable[int], folder: str = "INBOX", user: str | None = None) -> None:
        """Delete messages, as a user cleaning up the folder would."""
        with self.client(user) as conn:
            _ok(conn.select(_q(folder)))
            _ok(conn.uid("STORE", ",".join(str(u) for u in uids), "+FLAGS.SILENT", r"(\Deleted)"))
            _ok(conn.expunge())

    def recreate_inbox(self, user: str | None = None) -> int:
        """Recreate the INBOX with the same mails, as a server migration does; return the new UIDVALIDITY.

        The server is stopped, the INBOX's UID list and indexes are removed
        (the mail files stay), and the server started again: Dovecot rescans
        the maildir, numbers the mails from UID 1 and gives the folder a new
        UIDVALIDITY. Connected clients are cut off on the way.
        """
        user = user or self.user
        before = self.status("INBOX", user)["UIDVALIDITY"]
        self.stop()
        maildir = self.root / "mail" / user
        for path in maildir.iterdir():
            if path.name.startswith(("dovecot-uidlist", "dovecot.index", "dovecot.list.index")):
                path.unlink()
        self.start()
        after = self.status("INBOX", user)["UIDVALIDITY"]
        assert after != before, "Dovecot kept the UIDVALIDITY"
        return after


def _q(folder: str) -> str:
    """A quoted folder name in modified UTF-7 (RFC 3501 5.1.3)."""
    parts = []
    for part in re.split(r"([^\x20-\x7e]+)", folder):
        if part and not 0x20 <= ord(part[0]) <= 0x7E:
            parts.append("&" + base64.b64encode(part.encode("utf-16-be")).decode().rstrip("=").replace("/", ",") + "-")
        else:
            parts.append(part.replace("&", "&-"))
    return '"' + "".join(parts).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ok(result: tuple[str, list[bytes | None]]) -> None:
    typ, data = result
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{typ} {data!r}")
