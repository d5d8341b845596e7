"""A wheel built from the checkout is the whole product: installed in a fresh venv, it serves and acknowledges.

The checkout is never on the path of the installed copy (it runs from a
temporary directory), so a template, a migration or the agents' manual that
the wheel leaves out makes this test fail, as it would fail an admin.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from tests.helpers import ROOT, make_mail, send, wait_for, write_config
from tests.outbound_helpers import sent_mails


def _build_wheel(dist: Path) -> Path:
    """pip builds in the checkout itself (its build/ and egg-info folders): two tests building at once, on two
    test workers, would trip over each other's files, so the builds take turns."""
    with open(Path(tempfile.gettempdir()) / "mailgate-test-wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
            check=True,
            capture_output=True,
            timeout=600,
        )
    [wheel] = dist.glob("mailgate-*.whl")
    return wheel


def _fresh_venv(venv: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return python


def _listening(serve: subprocess.Popen[bytes], log: Path) -> int | None:
    match = re.search(r"msg=listening addr=[\d.]+:(\d+)", log.read_text(errors="replace"))
    if match:
        return int(match.group(1))
    if serve.poll() is not None:
        raise AssertionError(f"serve exited with {serve.returncode}:\n{log.read_text(errors='replace')}")
    return None


def test_the_wheel_carries_the_templates_the_migrations_and_the_manual(tmp_path: Path):
    names = zipfile.ZipFile(_build_wheel(tmp_path / "dist")).namelist()
    assert any(re.fullmatch(r"mailgate/.*templates/en/acknowledgment\.j2", n) for n in names), names
    assert any(re.fullmatch(r"mailgate/.*migrations/versions/0001_initial_schema\.py", n) for n in names)
    assert any(re.fullmatch(r"mailgate/.*manual/agents\.md", n) for n in names)
    assert "mailgate/examples/config.example.toml" in names
    assert "mailgate/examples/rules/10-vip.toml" in names


def test_a_wheel_installed_in_a_fresh_venv_serves_and_acknowledges(tmp_path: Path):
    python = _fresh_venv(tmp_path / "venv", _build_wheel(tmp_path / "dist"))
    # the dependencies come from the test environment (no download); mailgate itself only from the wheel
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"], "PYTHONUNBUFFERED": "1"}
    home = tmp_path / "home"
    home.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import mailgate; print(mailgate.__file__)"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert where.startswith(str(tmp_path / "venv")), where

    init = subprocess.run(
        [str(python), "-m", "mailgate", "--config", str(home / "example.toml"), "init"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    assert "[support]" in (home / "example.toml").read_text(), "init wrote the shipped example config"
    config = write_config(home, f"sqlite:///{home / 'data' / 'mailgate.sqlite3'}")
    log = home / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(
            [str(python), "-m", "mailgate", "--config", str(config), "serve"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
            env=env,
        )
    try:
        port = wait_for(lambda: _listening(serve, log), timeout=60, message="serve listening")
        send(port, make_mail(subject="From the wheel", msgid="<wheel1@customer.example>"))
        mails = wait_for(lambda: sent_mails(home / "data"), timeout=60, message="the acknowledgment")
        assert mails[0]["To"].addresses[0].addr_spec == "alice@customer.example"
        assert "[#1]" in str(mails[0]["Subject"])
    finally:
        serve.terminate()
        serve.wait(30)
