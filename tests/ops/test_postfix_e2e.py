"""docs/postfix.md, exactly as written, with a real private Postfix in front of a real `mailgate serve`.

A customer writes to Postfix; Postfix hands the mail to mailgate (recipe a:
the SMTP door; recipe b: the pipe transport); mailgate's acknowledgment goes
back out through Postfix (recipe c) into the customer's mailbox; the
customer's plain Reply, to the signed Reply-To address, reaches the ticket;
and while mailgate cannot take mail, Postfix defers it and delivers it once
the fault is fixed and the queue flushed: nothing bounces.
"""

from __future__ import annotations

import email
import json
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from email.utils import parseaddr
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests import postfix
from tests.helpers import ROOT, Daemon, mailgate, make_mail, wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not postfix.available(), reason="needs root and Debian's postfix")]

DOCS = (Path(__file__).parents[2] / "docs" / "postfix.md").read_text()


def recipe(heading: str, file: str) -> str:
    """The code block of docs/postfix.md that follows the mention of ``file`` under ``heading``."""
    section = DOCS.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    after = section.split(f"`{file}`", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def deliver(
    pf: postfix.Postfix, raw: bytes, rcpt: str = "support@example.com", mail_from: str = "alice@customer.example"
) -> None:
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=60) as client:
        client.sendmail(mail_from, [rcpt], raw)


def tickets(config: Path) -> dict[int, int]:
    done = mailgate(config, "tickets", "list", "--format", "json")
    assert done.returncode == 0, done.stderr.decode()
    return {t["number"]: t["messages"] for t in json.loads(done.stdout)}


def at_door(port: int) -> str:
    return recipe("(a)", "/etc/postfix/transport").replace("127.0.0.1]:2525", f"127.0.0.1]:{port}")


@pytest.fixture
def door_port() -> int:
    return postfix.free_port()


@pytest.fixture
def smtp_recipe(door_port: int) -> Iterator[postfix.Postfix]:
    pf = postfix.Postfix(
        main=recipe("(a)", "/etc/postfix/main.cf").replace("hash:", "texthash:"), transport=at_door(door_port)
    )
    yield pf.start()
    pf.stop()


def outbound_through(pf: postfix.Postfix) -> dict[str, object]:
    """Recipe (c), with the instance's port for Postfix's 25."""
    toml = recipe("(c)", "/etc/mailgate/config.toml")
    assert 'smarthost = "127.0.0.1:25"' in toml and "starttls = false" in toml
    return {"smarthost": f"127.0.0.1:{pf.port}", "starttls": False}


def test_the_smtp_door_recipe_carries_the_whole_conversation(
    tmp_path: Path, db_url: str, door_port: int, smtp_recipe: postfix.Postfix
):
    pf = smtp_recipe
    config = write_config(tmp_path, db_url, smtp={"listen": f"127.0.0.1:{door_port}"}, outbound=outbound_through(pf))
    daemon = Daemon(config).start()
    try:
        deliver(pf, make_mail(subject="Printer on fire", msgid="<pf1@customer.example>"))
        wait_for(lambda: tickets(config) == {1: 1}, timeout=60, message="the ticket behind Postfix")

        # the acknowledgment left through Postfix into Alice's mailbox, with the signed Reply-To
        ack = email.message_from_bytes(
            wait_for(
                lambda: pf.mailbox("alice@customer.example"),
                timeout=60,
                message="the acknowledgment in Alice's mailbox",
            )[0]
        )
        assert "[#1]" in ack["Subject"] and ack["Auto-Submitted"] == "auto-replied"
        reply_to = parseaddr(ack["Reply-To"])[1]
        assert re.fullmatch(r"support\+1\.[a-z0-9]+@example\.com", reply_to), reply_to
        assert "status=sent" in pf.log() and "relay=127.0.0.1" in pf.log()

        # a plain Reply: no token in the subject, only the signed address (recipient_delimiter = +)
        deliver(pf, make_mail(subject="more details", msgid="<pf2@customer.example>", to=reply_to), rcpt=reply_to)
        wait_for(lambda: tickets(config) == {1: 2}, timeout=60, message="the reply in ticket 1")
    finally:
        daemon.stop()

    # mailgate is down: Postfix defers, never bounces
    deliver(pf, make_mail(subject="While you were away", msgid="<pf3@customer.example>"))
    wait_for(lambda: "deferred" in pf.statuses("support@example.com"), timeout=60, message="Postfix defers")
    assert "bounced" not in pf.statuses("support@example.com")
    assert len(pf.queued()) == 1

    daemon = Daemon(config).start()
    try:
        wait_for(
            lambda: pf.flush_every(5) or tickets(config) == {1: 2, 2: 1},
            timeout=120,
            message="the deferred mail, after a flush",
        )
        wait_for(lambda: not pf.queued(), timeout=60, message="Postfix's queue empty")
    finally:
        daemon.stop()


def test_a_bounce_through_postfix_comes_back_to_its_verp_address(tmp_path: Path, db_url: str, door_port: int):
    """Recipe (c): a customer address that fails after Postfix took the mail bounces to our VERP return path."""
    main = recipe("(a)", "/etc/postfix/main.cf").replace("hash:", "texthash:")
    remote = Controller(_NoSuchUser(), hostname="127.0.0.1", port=postfix.free_port())
    remote.start()
    pf = postfix.Postfix(main=main, transport=at_door(door_port) + f"gone.example smtp:[127.0.0.1]:{remote.port}\n")
    pf.start()
    config = write_config(tmp_path, db_url, smtp={"listen": f"127.0.0.1:{door_port}"}, outbound=outbound_through(pf))
    daemon = Daemon(config).start()
    try:
        deliver(
            pf,
            make_mail(subject="Hello", msgid="<gone1@gone.example>", sender="carol@gone.example"),
            mail_from="carol@gone.example",
        )
        wait_for(
            lambda: "bounced" in pf.statuses("carol@gone.example"),
            timeout=60,
            message=f"Postfix bounces:\n{pf.log()[-3000:]}",
        )
        # the bounce went to support+bounce-N.mac@example.com, back through the door, and joined the ticket
        wait_for(lambda: tickets(config) == {1: 2}, timeout=60, message="the bounce in the ticket that bounced")
        assert "via=verp" in daemon.log()
        wait_for(lambda: _failed_rows(config), timeout=60, message="the acknowledgment's row failed")
    finally:
        daemon.stop()
        pf.stop()
        remote.stop()


class _NoSuchUser:
    """The customer's mail server, which knows no such user once Postfix has taken our mail."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 <carol@gone.example>: no such user"


def _failed_rows(config: Path) -> list[dict[str, object]]:
    done = mailgate(config, "outbox", "list", "--format", "json")
    rows = json.loads(done.stdout) if done.returncode == 0 else []
    return [r for r in rows if r.get("status") == "failed"]


# -- recipe (b): the pipe transport ------------------------------------------------------------------

SERVICE_USER = "nobody"  # stands in for the `mailgate` user of the recipe: any unprivileged account


def _interpreter_for(user: str) -> list[str] | None:
    """A command the service user can run mailgate with, or None (a venv under /root is not one)."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    site = Path(sysconfig.get_paths()["purelib"])
    if not system.exists():
        return None
    probe = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            "/usr/bin/env",
            f"PYTHONPATH={ROOT}:{site}",
            str(system),
            "-c",
            "import mailgate.cli, sqlalchemy, aiosmtpd",
        ],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return None
    return ["/usr/bin/env", f"PYTHONPATH={ROOT}:{site}", str(system), "-m", "mailgate"]


def test_the_pipe_transport_recipe_stores_and_defers_what_it_cannot_store(tmp_path: Path, db_url: str):
    user = pwd.getpwnam(SERVICE_USER)
    command = _interpreter_for(SERVICE_USER)
    if command is None:
        pytest.skip(f"no interpreter {SERVICE_USER} can run this checkout with (is it under /root?)")
    home = Path(tempfile.mkdtemp(prefix="mg-pipe-", dir="/tmp"))
    home.chmod(0o755)
    (home / "data").mkdir()
    os.chown(home / "data", user.pw_uid, user.pw_gid)
    if "sqlite" in db_url:
        db_url = f"sqlite:///{home / 'data' / 'mailgate.sqlite3'}"
    config = write_config(home, db_url, smtp={"listen": f"127.0.0.1:{postfix.free_port()}"})
    config.chmod(0o644)

    master = recipe("(b)", "/etc/postfix/master.cf")
    assert "user=mailgate" in master and "argv=/opt/mailgate/.venv/bin/mailgate" in master
    master = (
        master.replace("user=mailgate", f"user={SERVICE_USER}")
        .replace("/opt/mailgate/.venv/bin/mailgate", " ".join(command))
        .replace("/etc/mailgate/config.toml", str(config))
    )
    main = recipe("(b)", "/etc/postfix/main.cf").replace("hash:", "texthash:")
    pf = postfix.Postfix(main=main, master=master, transport=recipe("(b)", "/etc/postfix/transport"))
    pf.start()
    log = home / "serve.log"
    with open(log, "wb") as out:  # opened by the test: the service user need not write in home
        serve = subprocess.Popen(
            ["runuser", "-u", SERVICE_USER, "--", *command, "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    try:
        # serve creates the database as the service user: a root CLI call before it would make a file it cannot write
        wait_for(
            lambda: "msg=listening" in log.read_text(errors="replace") or serve.poll() is not None,
            timeout=120,
            message="serve listening",
        )
        assert serve.poll() is None, log.read_text(errors="replace")[-3000:]
        deliver(pf, make_mail(subject="Through the pipe", msgid="<pipe1@customer.example>"))
        wait_for(lambda: "sent" in pf.statuses("support@example.com"), timeout=120, message="the pipe delivers")
        try:
            wait_for(lambda: tickets(config) == {1: 1}, timeout=120, message="the piped ticket")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nserve (exit {serve.poll()}):\n{log.read_text(errors='replace')[-3000:]}"
            ) from None

        # the config cannot be read: ingest says 75, Postfix defers (never bounces the customer's mail)
        config.chmod(0o600)
        deliver(pf, make_mail(subject="While the config is broken", msgid="<pipe2@customer.example>"))
        wait_for(lambda: "deferred" in pf.statuses("support@example.com"), timeout=120, message="Postfix defers")
        assert "bounced" not in pf.statuses("support@example.com")
        config.chmod(0o644)
        # a flush that reaches the queue manager before the deferral is written finds nothing to retry: flush
        # until the mail is retried (each flush is a request to retry now, as an admin's `postqueue -f` is)
        wait_for(
            lambda: pf.flush_every(5) or tickets(config) == {1: 1, 2: 1},
            timeout=120,
            message="the deferred mail, after a flush",
        )
    finally:
        serve.terminate()
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
        pf.stop()
        shutil.rmtree(home, ignore_errors=True)
