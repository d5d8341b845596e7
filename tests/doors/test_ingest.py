"""The pipe door (`mailgate ingest`) is as safe as the SMTP door.

It enforces ``[smtp] max_message_size`` and stops reading there, streams a big
mail into the spool instead of holding it, and answers in sysexits codes an MTA
acts on correctly: 0 stored or spooled, 65 never retry, 66 unreadable file, 75
retry later. Every test runs the real command as a subprocess on real files.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailgate.config import load_config
from tests.helpers import ROOT, mailgate, stored_message_ids, wait_for, write_config

LIMIT = 256 * 1024


def sized_mail(size: int, msgid: str = "<big@customer.example>") -> bytes:
    """A plain mail of exactly ``size`` bytes: headers, then 78-byte lines of text."""
    head = (
        b"From: Alice <alice@customer.example>\r\nTo: support@example.com\r\nSubject: a big report\r\n"
        b"Message-ID: " + msgid.encode() + b"\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n"
    )
    body = (b"x" * 76 + b"\r\n") * ((size - len(head)) // 78 + 1)
    raw = head + body[: size - len(head)]
    assert len(raw) == size
    return raw


def spool_files(config: Path) -> list[Path]:
    spool = load_config(config).spool_dir
    return sorted(spool.rglob("*.eml")) if spool.exists() else []


def start_ingest(config: Path) -> subprocess.Popen[bytes]:
    """`mailgate ingest` reading stdin from a pipe the test keeps open as long as it likes."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailgate", "--config", str(config), "ingest"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


@pytest.fixture
def small_limit(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, db_url, smtp={"max_message_size": LIMIT})


def test_a_mail_of_exactly_max_message_size_is_spooled_and_the_daemon_stores_it(small_limit, daemon_factory):
    result = mailgate(small_limit, "ingest", input=sized_mail(LIMIT))
    assert result.returncode == 0, result.stderr
    [entry] = spool_files(small_limit)
    assert entry.parent.name == "incoming"
    daemon_factory(small_limit)
    wait_for(lambda: stored_message_ids(small_limit) == ["<big@customer.example>"], message="stored by the daemon")


def test_a_running_daemon_stores_what_the_pipe_door_spools(config_file, daemon_factory):
    daemon_factory(config_file)
    result = mailgate(config_file, "ingest", input=sized_mail(4096, msgid="<piped@customer.example>"))
    assert result.returncode == 0, result.stderr
    wait_for(lambda: stored_message_ids(config_file) == ["<piped@customer.example>"], message="stored by the daemon")
    wait_for(lambda: spool_files(config_file) == [], message="the spool entry settled")


PIPE_DOOR_PROBE = """
import json, sys
from mailgate.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def test_the_pipe_door_imports_neither_the_orm_nor_the_smtp_server_nor_alembic_nor_jinja2(config_file, tmp_path):
    """An MTA runs ingest once per mail: it spools and leaves, without the daemon's heavy imports."""
    mail = tmp_path / "one.eml"
    mail.write_bytes(sized_mail(2048, msgid="<light@customer.example>"))
    done = subprocess.run(
        [sys.executable, "-c", PIPE_DOOR_PROBE, "--config", str(config_file), "ingest", str(mail)],
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert report["status"] == 0, done.stderr
    heavy = {
        "aiosmtpd",
        "sqlalchemy",
        "alembic",
        "jinja2",
        "asyncio",
        "mailgate.storage.models",
        "mailgate.outbound.templating",
    }
    assert sorted(m for m in report["modules"] if m.split(".")[0] in heavy or m in heavy) == []
    assert [p.parent.name for p in spool_files(config_file)] == ["incoming"]


def test_one_byte_over_max_message_size_is_refused_for_good_with_5_3_4_and_nothing_spooled(small_limit):
    result = mailgate(small_limit, "ingest", input=sized_mail(LIMIT + 1))
    assert result.returncode == 65  # EX_DATAERR: the MTA bounces, it does not retry
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("5.3.4 ")  # Postfix's pipe(8) takes this as the DSN code
    assert "larger than max_message_size (262144 bytes)" in lines[0]
    assert spool_files(small_limit) == []
    assert not list((load_config(small_limit).spool_dir / "tmp").iterdir())


def test_a_named_file_over_the_limit_is_refused_the_same_way(small_limit, tmp_path):
    mail = tmp_path / "huge.eml"
    mail.write_bytes(sized_mail(LIMIT * 3))
    result = mailgate(small_limit, "ingest", str(mail))
    assert result.returncode == 65
    assert result.stderr.startswith(b"5.3.4 ") and str(mail).encode() in result.stderr
    assert spool_files(small_limit) == []


def test_it_stops_reading_at_the_limit_instead_of_waiting_for_the_end_of_the_input(small_limit):
    """The sender offers 40 MB and never closes the pipe: ingest refuses after limit + 1 bytes and exits."""
    proc = start_ingest(small_limit)
    offered = sized_mail(40 * 1024 * 1024)
    written = 0
    release = threading.Event()

    def feed() -> None:
        nonlocal written
        try:
            for start in range(0, len(offered), 65536):
                written += proc.stdin.write(offered[start : start + 65536])
                proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            return
        release.wait(300)  # keeps stdin open: the process must not need its end

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        assert proc.wait(timeout=120) == 65
        assert feeder.is_alive() or written < len(offered), "the whole input was taken"
        # what left the test is what ingest read (limit + 1) plus at most what a pipe buffers
        assert written <= LIMIT + 1 + (1 << 20)
        assert proc.stderr.read().startswith(b"5.3.4 ")
    finally:
        release.set()
        proc.kill()
        proc.wait()
        feeder.join(30)
    assert spool_files(small_limit) == []


def test_a_big_mail_is_written_to_the_spool_while_it_arrives_and_left_to_the_daemon(config_file, daemon_factory):
    """Below the limit nothing holds the mail whole: it grows in spool/tmp while stdin is still open."""
    raw = sized_mail(6 * 1024 * 1024)
    first, rest = raw[: 4 * 1024 * 1024], raw[4 * 1024 * 1024 :]
    proc = start_ingest(config_file)
    tmp = load_config(config_file).spool_dir / "tmp"
    try:
        proc.stdin.write(first)
        proc.stdin.flush()

        def growing() -> bool:
            return any(p.stat().st_size >= 3 * 1024 * 1024 for p in tmp.glob("*.eml")) if tmp.exists() else False

        wait_for(growing, timeout=120, message="the mail on disk in spool/tmp before its end arrived")
        assert proc.poll() is None
        proc.stdin.write(rest)
        proc.stdin.close()
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"the daemon will store it" in proc.stderr.read()
    [entry] = spool_files(config_file)
    assert entry.parent.name == "incoming"
    assert entry.read_bytes().split(b"\r\n", 1)[1] == raw  # after the envelope line: the mail byte for byte
    daemon_factory(config_file)
    wait_for(
        lambda: stored_message_ids(config_file) == ["<big@customer.example>"],
        timeout=120,
        message="the daemon stores the big mail",
    )


def test_with_the_database_away_a_mail_is_spooled_with_0_and_stored_by_the_daemon_later(
    tmp_path, db_url, daemon_factory
):
    """0 means durable, not stored: the daemon stores the entry once the database is back."""
    (tmp_path / "not-a-dir").write_text("the database cannot live under a file")
    away = write_config(tmp_path, f"sqlite:///{tmp_path / 'not-a-dir' / 'mailgate.sqlite3'}")
    result = mailgate(away, "ingest", input=sized_mail(4096, msgid="<while-away@customer.example>"))
    assert result.returncode == 0, result.stderr
    assert b"the daemon will store it" in result.stderr
    [entry] = spool_files(away)
    assert entry.parent.name == "incoming"
    back = write_config(tmp_path, db_url)  # same data directory and spool, a reachable database
    daemon_factory(back)
    wait_for(
        lambda: stored_message_ids(back) == ["<while-away@customer.example>"],
        timeout=120,
        message="the spooled mail stored once the database is back",
    )


def test_an_input_that_breaks_off_while_read_is_a_temporary_failure_75(config_file):
    """stdin fails on read (a connection reset under it): the MTA keeps the mail and retries; nothing is spooled."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    with sender, receiver:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "--config", str(config_file), "ingest"],
            stdin=receiver,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        sender.sendall(sized_mail(4096)[:2000])
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sender.close()  # a reset, not an end of input
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr
    assert b"cannot read -" in stderr
    assert spool_files(config_file) == []


def _config_is_a_directory(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "config.toml"
    path.mkdir()
    return path, "Is a directory"


def _config_under_a_file(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "etc").write_text("a file, not a directory")
    return tmp_path / "etc" / "config.toml", "Not a directory"


def _config_missing(tmp_path: Path) -> tuple[Path, str]:
    return tmp_path / "absent.toml", "no such config file"


def _config_not_toml(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "config.toml"
    path.write_text("[mailgate\nhostname = \n")
    return path, "not valid TOML"


def _config_wrong_value(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "config.toml"
    path.write_text('[smtp]\nmax_message_size = "huge"\n')
    return path, "smtp.max_message_size"


@pytest.mark.parametrize(
    "broken", [_config_is_a_directory, _config_under_a_file, _config_missing, _config_not_toml, _config_wrong_value]
)
def test_a_config_it_cannot_read_is_a_temporary_failure_75_naming_the_file(tmp_path, broken):
    """75 and not 78: an MTA keeps a 75 and retries, but bounces a 78 back to the customer (5.3.5).

    Unreadability is made with paths that no user may open, root included (the suite may run as root,
    for whom a chmod blocks nothing); a permission error takes the same branch.
    """
    path, problem = broken(tmp_path)
    result = mailgate(path, "ingest", input=sized_mail(4096))
    assert result.returncode == 75, result.stderr
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines  # Postfix puts this line in its log and DSN
    assert lines[0].startswith("4.3.5 mailgate: config error: ")
    assert str(path.resolve()) in lines[0] and problem in lines[0]


def test_the_help_lists_every_exit_code(config_file):
    result = mailgate(config_file, "ingest", "--help")
    text = " ".join(result.stdout.decode().split())
    assert result.returncode == 0
    for code in ("0 spooled durably", "65 not a mail or too big", "66 a named file", "75 try again later"):
        assert code in text


def _readme_exit_codes() -> set[int]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### The pipe door: `mailgate ingest`", 1)[1].split("\n## ", 1)[0]
    return {
        int(line.split("|")[1].split()[0])
        for line in table.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip()[:1].isdigit()
    }


def test_the_readme_exit_code_table_is_the_code_s(config_file, tmp_path):
    """Each code the README lists is what ingest does in that case: 0, 65, 66 and 75, and no other."""
    assert _readme_exit_codes() == {0, 65, 66, 75}
    assert mailgate(config_file, "ingest", input=sized_mail(500)).returncode == 0
    not_a_mail = mailgate(config_file, "ingest", input=b"\x00\x01 no header at all")
    assert not_a_mail.returncode == 65, not_a_mail.stderr
    missing = mailgate(config_file, "ingest", str(tmp_path / "no-such.eml"))
    assert missing.returncode == 66 and len(missing.stderr.decode().strip().splitlines()) == 1
    unreadable = mailgate(tmp_path / "no-such-config.toml", "ingest", input=sized_mail(500))
    assert unreadable.returncode == 75 and unreadable.stderr.decode().startswith("4.3.5")
