"""The production unit file: systemd accepts every line, and it keeps its promises.

``systemd-analyze verify`` exits 0 even for unknown keys (it only warns), so
the tests also read its output. It also checks that ``ExecStart``'s program
exists, so the unit is copied with ``/usr/local/bin/mailgate`` replaced by
this interpreter running the same CLI; every other line is verified as shipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "mailgate.service"
PORT_25 = SYSTEMD / "port-25.conf"
EXEC_START = "ExecStart=/usr/local/bin/mailgate serve --config /etc/mailgate/config.toml"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not on PATH (Debian package: systemd)",
)


def unit_lines(path: Path = UNIT) -> list[str]:
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit as shipped, with ExecStart pointing at a program that exists here."""
    text = UNIT.read_text()
    assert text.count(EXEC_START) == 1
    copy = tmp_path / "mailgate.service"
    copy.write_text(text.replace("ExecStart=/usr/local/bin/mailgate ", f"ExecStart={sys.executable} -m mailgate.cli "))
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def complaints(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Lines where systemd objects to our files: unknown keys, bad values, missing programs."""
    markers = ("mailgate.service", "port-25.conf", "Unknown", "Failed to parse", "ignoring")
    output = (result.stdout + result.stderr).splitlines()
    return [line for line in output if any(marker in line for marker in markers)]


@needs_systemd_analyze
class TestSystemdAccepts:
    def test_the_unit_verifies_without_a_warning(self, unit_copy: Path) -> None:
        result = analyze("verify", str(unit_copy))
        assert result.returncode == 0, result.stdout + result.stderr
        assert complaints(result) == []

    def test_the_port_25_drop_in_verifies_without_a_warning(self, unit_copy: Path) -> None:
        drop_ins = unit_copy.parent / "mailgate.service.d"
        drop_ins.mkdir()
        shutil.copy(PORT_25, drop_ins / "port-25.conf")
        result = analyze("verify", str(unit_copy))
        assert result.returncode == 0, result.stdout + result.stderr
        assert complaints(result) == []

    def test_a_misspelt_key_would_be_caught(self, unit_copy: Path) -> None:
        """Guards the guard: proves the output check sees what exit code 0 hides."""
        unit_copy.write_text(unit_copy.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
        result = analyze("verify", str(unit_copy))
        assert any("NoNewPrivilege" in line for line in complaints(result))

    @pytest.mark.parametrize("with_port_25", [False, True])
    def test_exposure_stays_low(self, unit_copy: Path, with_port_25: bool) -> None:
        # systemd's own score: 0.0 (locked down) .. 10.0 (unprotected); 2.0 is "OK".
        if with_port_25:
            drop_ins = unit_copy.parent / "mailgate.service.d"
            drop_ins.mkdir()
            shutil.copy(PORT_25, drop_ins / "port-25.conf")
        result = analyze("security", "--offline=true", "--threshold=20", str(unit_copy))
        assert result.returncode == 0, result.stdout + result.stderr


class TestPromises:
    """What the daemon and the install notes rely on; each line is there on purpose."""

    @pytest.mark.parametrize(
        "line",
        [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=30",
            EXEC_START,
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "User=mailgate",
            "Group=mailgate",
            "StateDirectory=mailgate",
            "ConfigurationDirectory=mailgate",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "RestrictNamespaces=yes",
            "LockPersonality=yes",
            "MemoryDenyWriteExecute=yes",
            "RestrictRealtime=yes",
            "SystemCallArchitectures=native",
            "SystemCallFilter=@system-service",
            "SystemCallFilter=~@privileged @resources",
            "CapabilityBoundingSet=",
            "AmbientCapabilities=",
        ],
    )
    def test_the_unit_sets(self, line: str) -> None:
        assert line in unit_lines()

    def test_the_stop_timeout_is_bounded(self) -> None:
        assert any(line.startswith("TimeoutStopSec=") for line in unit_lines())

    def test_no_capability_is_granted_by_default(self) -> None:
        granted = [line for line in unit_lines() if line.startswith(("Capability", "Ambient"))]
        assert granted == ["CapabilityBoundingSet=", "AmbientCapabilities="]

    def test_the_port_25_drop_in_grants_only_net_bind_service(self) -> None:
        assert unit_lines(PORT_25) == [
            "[Service]",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        ]
