"""`mailgate doctor`: each check fails on a deliberately broken setup, passes on a good one, and says the fix."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from mailgate.cli import doctor_checks as doctor
from mailgate.cli import doctor_postfix
from mailgate.config import load_config
from mailgate.storage import db
from tests.helpers import mailgate, write_config

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="judging another user's access needs files it does not own")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user can reach (pytest's tmp_path sits under a 0700 folder of root's)."""
    path = Path(tempfile.mkdtemp(prefix="mailgate-doctor-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def nobody() -> doctor.ServiceUser:
    return doctor.ServiceUser.named("nobody")


def by_name(checks: list[doctor.Check], name: str) -> doctor.Check:
    return next(c for c in checks if c.name == name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[int]:
    controller = Controller(_Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port
    controller.stop()


# -- permissions, judged for the service user ---------------------------------------------------------


@ROOT_ONLY
def test_a_config_the_service_user_cannot_read_fails_with_the_chmod_to_run(open_dir: Path, nobody):
    config = write_config(open_dir, "sqlite://")
    config.chmod(0o600)
    broken = doctor.check_config(config, nobody)
    assert not broken.ok and "not readable by nobody" in broken.detail and "chmod 0640" in broken.fix
    config.chmod(0o644)
    assert doctor.check_config(config, nobody).ok


def test_a_missing_config_fails(tmp_path: Path):
    check = doctor.check_config(tmp_path / "nope.toml", doctor.ServiceUser.named(None))
    assert not check.ok and "does not exist" in check.detail


@ROOT_ONLY
def test_a_data_dir_the_service_user_cannot_write_fails(open_dir: Path, nobody):
    config = load_config(write_config(open_dir, "sqlite://"))
    (config.spool_dir / "incoming").mkdir(parents=True)
    assert not doctor.check_data_dir(config, nobody).ok
    for folder in (config.data_dir, config.spool_dir, config.spool_dir / "incoming"):
        os.chown(folder, nobody.uid, -1)
    assert doctor.check_data_dir(config, nobody).ok


@ROOT_ONLY
def test_an_sqlite_side_file_left_read_only_is_named(open_dir: Path, nobody):
    config = load_config(write_config(open_dir, f"sqlite:///{open_dir / 'data' / 'mailgate.sqlite3'}"))
    config.data_dir.mkdir()
    os.chown(config.data_dir, nobody.uid, -1)
    database = config.data_dir / "mailgate.sqlite3"
    for path in (database, Path(f"{database}-shm")):
        path.write_bytes(b"")
        os.chown(path, nobody.uid, -1)
    assert doctor.check_sqlite_files(config, nobody).ok
    os.chown(f"{database}-shm", 0, -1)
    broken = doctor.check_sqlite_files(config, nobody)
    assert not broken.ok and broken.detail.startswith(f"{database}-shm") and "readonly database" in broken.detail


# -- the database ------------------------------------------------------------------------------------


def test_an_unreachable_database_fails(tmp_path: Path):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?connect_timeout=3"
    check = doctor.check_database(load_config(write_config(tmp_path, url)))
    assert not check.ok and "cannot reach" in check.detail and "database_url" in check.fix


def test_a_schema_behind_the_code_asks_for_db_upgrade(config_file: Path):
    config = load_config(config_file)
    config.data_dir.mkdir(exist_ok=True)
    engine = db.make_engine(config.db_url)
    db.upgrade(engine, "0001")
    behind = doctor.check_database(config)
    assert not behind.ok and behind.fix == "mailgate db upgrade"
    db.upgrade(engine)
    engine.dispose()
    assert doctor.check_database(config).ok


# -- what admins edit ---------------------------------------------------------------------------------


def test_a_broken_template_fails(make_config, tmp_path: Path):
    templates = tmp_path / "templates" / "en"
    templates.mkdir(parents=True)
    (templates / "acknowledgment.j2").write_text("{% block subject %}{{ ticket.number {% endblock %}")
    config = load_config(make_config(templates={"dir": str(tmp_path / "templates")}))
    check = doctor.check_templates(config)
    assert not check.ok and "acknowledgment.j2" in check.detail and check.fix == "mailgate templates check"
    shutil.copy(Path(__file__).parents[2] / "mailgate" / "templates" / "en" / "acknowledgment.j2", templates)
    assert doctor.check_templates(config).ok


def test_a_broken_rule_file_fails(make_config, tmp_path: Path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-bad.toml").write_text("[[rule]]\nname = \n")
    assert not doctor.check_rules(load_config(make_config(rules={"dir": str(rules)}))).ok
    (rules / "10-bad.toml").write_text(
        '[[rule]]\nname = "billing"\nqueue = "billing"\n[rule.match]\nsubject = "invoice"\n'
    )
    good = make_config(rules={"dir": str(rules)}, queues=[{"name": "billing"}])
    assert doctor.check_rules(load_config(good)).ok, doctor.check_rules(load_config(good)).detail


def test_a_secret_others_can_read_fails(config_file: Path):
    config = load_config(config_file)
    config.data_dir.mkdir(exist_ok=True)
    secret = config.data_dir / "secret"
    secret.write_text("A" * 32 + "\n")
    secret.chmod(0o644)
    broken = doctor.check_secret(config, doctor.ServiceUser.named(None))
    assert not broken.ok and broken.fix == f"chmod 0600 {secret}"
    secret.chmod(0o600)
    assert doctor.check_secret(config, doctor.ServiceUser.named(None)).ok


# -- the daemon and the smarthost ---------------------------------------------------------------------


def test_the_door_is_probed_over_smtp(make_config, smtp_server: int):
    assert doctor.check_door(load_config(make_config(smtp={"listen": f"127.0.0.1:{smtp_server}"}))).ok
    closed = doctor.check_door(load_config(make_config(smtp={"listen": f"127.0.0.1:{free_port()}"})))
    assert closed is not None and not closed.ok and "mailgate serve" in closed.fix


def test_mail_waiting_long_in_the_spool_means_no_worker(config_file: Path):
    config = load_config(config_file)
    incoming = config.spool_dir / "incoming"
    incoming.mkdir(parents=True)
    arrived = 1_800_000_000.0
    (incoming / f"{int(arrived * 1e9):020d}-1-0.eml").write_bytes(b"Subject: x\n\nx\n")
    assert doctor.check_worker(config, now=lambda: arrived + 10).ok
    stale = doctor.check_worker(config, now=lambda: arrived + 3600)
    assert not stale.ok and "no daemon is processing" in stale.detail and "mailgate serve" in stale.fix


def test_a_smarthost_without_starttls_fails_when_starttls_is_required(make_config, smtp_server: int):
    host = f"127.0.0.1:{smtp_server}"
    required = doctor.check_smarthost(load_config(make_config(outbound={"smarthost": host, "starttls": True})))
    assert not required.ok and "STARTTLS" in required.detail
    assert doctor.check_smarthost(load_config(make_config(outbound={"smarthost": host, "starttls": False}))).ok
    gone = doctor.check_smarthost(load_config(make_config(outbound={"smarthost": f"127.0.0.1:{free_port()}"})))
    assert not gone.ok and "cannot reach" in gone.detail


# -- Postfix in front ---------------------------------------------------------------------------------

POSTFIX = pytest.mark.skipif(
    shutil.which("postconf") is None and not Path("/usr/sbin/postconf").exists(),
    reason="needs Debian's postfix (postconf, postmap)",
)


def postfix_dir(tmp_path: Path, main_cf: str, transport: str = "") -> str:
    directory = tmp_path / "postfix"
    directory.mkdir(exist_ok=True)
    (directory / "transport").write_text(transport)
    (directory / "main.cf").write_text(main_cf.replace("@DIR@", str(directory)))
    return str(directory)


@POSTFIX
def test_postfix_settings_that_break_mailgate_fail(config_file: Path, tmp_path: Path):
    config = load_config(config_file)
    broken = postfix_dir(
        tmp_path,
        "recipient_delimiter =\nmessage_size_limit = 10240000\ntransport_maps = texthash:@DIR@/transport\n",
        "example.com smtp:[192.0.2.1]:25\n",
    )
    checks = list(doctor_postfix.checks(config, broken))
    assert not by_name(checks, "postfix_delimiter").ok
    assert not by_name(checks, "postfix_size").ok and "10240000" in by_name(checks, "postfix_size").detail
    assert not by_name(checks, "postfix_transport").ok


@POSTFIX
def test_postfix_set_up_as_docs_postfix_md_says_passes(config_file: Path, tmp_path: Path):
    config = load_config(config_file)
    good = postfix_dir(
        tmp_path,
        "recipient_delimiter = +\nmessage_size_limit = 30000000\ntransport_maps = texthash:@DIR@/transport\n",
        f"example.com smtp:[{config.smtp.host}]:{config.smtp.port}\n",
    )
    checks = list(doctor_postfix.checks(config, good))
    assert [c.name for c in checks] == ["postfix_delimiter", "postfix_size", "postfix_transport"]
    assert all(c.ok for c in checks), checks


@POSTFIX
def test_mail_config_names_the_postfix_instance(config_file: Path, tmp_path: Path, monkeypatch):
    missing = tmp_path / "no-such-postfix"
    monkeypatch.setenv("MAIL_CONFIG", str(missing))
    checks = list(doctor_postfix.checks(load_config(config_file)))
    assert len(checks) == 1 and not checks[0].ok and str(missing) in checks[0].detail


# -- the command ---------------------------------------------------------------------------------------


@POSTFIX
def test_the_command_exits_0_on_a_good_setup_and_1_with_json_naming_what_failed(
    make_config, tmp_path: Path, smtp_server: int
):
    good = make_config(smtp={"listen": f"127.0.0.1:{smtp_server}"})
    env = {
        "MAIL_CONFIG": postfix_dir(
            tmp_path,
            "recipient_delimiter = +\nmessage_size_limit = 0\ntransport_maps = texthash:@DIR@/transport\n",
            f"example.com smtp:[127.0.0.1]:{smtp_server}\n",
        )
    }
    done = mailgate(good, "doctor", env=env)
    assert done.returncode == 0, done.stdout.decode()
    assert all(line.startswith(("ok ", " ")) for line in done.stdout.decode().splitlines())

    broken = make_config(smtp={"listen": f"127.0.0.1:{free_port()}"})
    done = mailgate(broken, "doctor", "--format", "json", env=env)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False
    # the door is not where the config says, and Postfix still routes to the old port
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["smtp_door", "postfix_transport"]
    assert set(report["checks"][0]) == {"name", "ok", "detail", "fix"}


def test_the_command_changes_nothing(make_config, tmp_path: Path):
    config = load_config(make_config())
    mailgate(config.path, "doctor")
    assert not config.data_dir.exists()


def test_the_database_check_passes_on_a_database_at_head(harness):
    with harness.session() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1
    assert doctor.check_database(harness.runtime.config).ok
