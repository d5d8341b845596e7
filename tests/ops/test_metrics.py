"""Prometheus metrics and /healthz, against a real daemon over real HTTP."""

from __future__ import annotations

import http.client
import re
import shutil
import smtplib
import socket
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mailgate.app import build
from mailgate.config import load_config
from mailgate.errors import ConfigError
from mailgate.ops import health
from tests.helpers import make_mail, wait_for


def metrics_port(daemon) -> int:
    match = wait_for(
        lambda: re.search(r'msg="metrics listening" addr=[\d.]+:(\d+)', daemon.log()), message="the metrics listener"
    )
    return int(match.group(1))


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric, _, label_text = key.partition("{")
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric == name and found == wanted:
            return float(value)
    return 0.0


@pytest.fixture
def metrics_daemon(daemon_factory, make_config):
    config = make_config(metrics={"listen": "127.0.0.1:0"})
    daemon = daemon_factory(config)
    return daemon, metrics_port(daemon), config


def test_metrics_count_what_was_sent(metrics_daemon):
    daemon, port, _config = metrics_daemon
    first = make_mail(subject="problem 0", msgid="<m0@customer.example>")
    daemon.send(first)
    for n in range(1, 3):
        daemon.send(make_mail(subject=f"problem {n}", msgid=f"<m{n}@customer.example>"))
    daemon.send(make_mail(subject="Re: problem 0 [#1]", msgid="<r1@customer.example>"))
    daemon.send(first)  # the same mail again: a duplicate
    with smtplib.SMTP("127.0.0.1", daemon.port) as client:
        client.ehlo()
        client.mail("alice@customer.example")
        code, _ = client.rcpt("someone@elsewhere.example")
        assert code == 550

    def settled() -> str | None:
        status, text = get(port, "/metrics")
        assert status == 200
        return text if sample(text, "mailgate_pipeline_latency_seconds_count") == 5 else None

    text = wait_for(settled, message="five messages through the pipeline")
    assert sample(text, "mailgate_messages_received_total", adapter="smtp", verdict="new") == 3
    assert sample(text, "mailgate_messages_received_total", adapter="smtp", verdict="reply") == 1
    assert sample(text, "mailgate_messages_received_total", adapter="smtp", verdict="duplicate") == 1
    assert sample(text, "mailgate_tickets_created_total") == 3
    assert sample(text, "mailgate_smtp_transactions_total", verdict="accepted") == 5
    assert sample(text, "mailgate_smtp_transactions_total", verdict="rejected") == 1
    assert sample(text, "mailgate_spool_depth", state="incoming") == 0
    assert sample(text, "mailgate_spool_depth", state="quarantine") == 0
    assert "mailgate_outbox_backlog" in text and "mailgate_outbox_failed" in text
    assert "# TYPE mailgate_sla_breaches_total counter" in text
    assert get(port, "/nowhere")[0] == 404


def test_healthz_fails_while_the_spool_is_unwritable(metrics_daemon):
    _daemon, port, config = metrics_daemon
    assert get(port, "/healthz") == (200, f"spool: ok\ndatabase: ok\nnode: {socket.gethostname()}\n")
    tmp = load_config(config).spool_dir / "tmp"
    shutil.rmtree(tmp)
    tmp.write_text("a file where the spool's tmp/ folder should be")  # root ignores chmod; this it cannot
    status, body = get(port, "/healthz")
    assert status == 503
    assert body.startswith("spool: cannot write") and "database: ok" in body
    tmp.unlink()
    tmp.mkdir()
    assert get(port, "/healthz")[0] == 200


def test_health_check_fails_when_the_database_is_unreachable(tmp_path: Path, make_config):
    runtime = build(load_config(make_config()))  # starting reads the installation's key from the database
    runtime.engine.dispose()
    runtime.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # then it goes away
    try:
        healthy, results = health.check(runtime)
    finally:
        runtime.close()
    assert not healthy
    assert results["spool"] == "ok"
    assert results["database"] != "ok" and "OperationalError" in results["database"]


def test_metrics_are_off_unless_configured(daemon, harness):
    assert "metrics listening" not in daemon.log()
    assert harness.runtime.services.metrics is None  # nothing counted, nothing imported


def test_a_bad_listen_address_is_a_config_error(make_config):
    config = load_config(make_config(metrics={"listen": "localhost"}))
    with pytest.raises(ConfigError, match=r"metrics\.listen: expected host:port"):
        build(config)
