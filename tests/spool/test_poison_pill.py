"""No single mail may stop the intake: a mail over its work budget, or one that kills or wedges the process
every time it is claimed (a poison pill), fails alone, quarantined with the reason, while the mails behind
it go on; SIGTERM stops the daemon within its grace even with a mail mid-pipeline, which goes back to the
spool."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from mailgate.config import load_config
from mailgate.daemon import parse_settings
from mailgate.errors import ConfigError
from mailgate.spool.disk import Spool, SpoolMeta
from tests.helpers import mailgate, make_mail, wait_for, write_config
from tests.pipeline.test_crash_and_storage_failures import stored_message_ids

FAULTS = {"plugins": ["tests.faults"]}


def _spool(config: Path) -> Spool:
    spool = Spool(load_config(config).spool_dir)
    spool.ensure()
    return spool


def _arrived(spool: Spool, raw: bytes) -> None:
    """What a door does: the mail is durable in incoming/, waiting for the worker."""
    spool.put(raw, SpoolMeta(id="", mail_from="alice@customer.example", rcpt_tos=["support@example.com"]))


# -- the work budget (an injected clock, no sleeps) ---------------------------------------------------------


def _spend(clock, seconds: float):
    """A thread finder (the first place a plugin can act) that costs a mail ``seconds`` of the clock."""

    def finder(ctx):
        if "[slow]" in (ctx.mail.subject or ""):
            clock.advance(seconds)

    return finder


def test_a_mail_over_its_work_budget_is_quarantined_at_once_and_the_next_is_stored(harness_factory, make_config, clock):
    harness = harness_factory(make_config(spool={"mail_budget": "60s", "max_attempts": 5}))
    harness.runtime.services.thread_finders.insert(0, ("slow", _spend(clock, 61)))
    harness.deliver(make_mail(subject="[slow] a heavy one", msgid="<heavy@customer.example>"))
    harness.deliver(make_mail(subject="a light one", msgid="<light@customer.example>"))

    quarantined = harness.runtime.spool.entries("quarantine")
    assert len(quarantined) == 1
    meta = quarantined[0].read_meta()
    assert meta.attempts == 1  # not retried max_attempts times: it would cost as much again
    assert "MailBudgetExceeded" in meta.last_error and "budget of 60s" in meta.last_error
    assert stored_message_ids(harness.runtime.config.path) == ["<light@customer.example>"]


def test_a_mail_within_its_budget_is_stored(harness_factory, make_config, clock):
    harness = harness_factory(make_config(spool={"mail_budget": "60s"}))
    harness.runtime.services.thread_finders.insert(0, ("slow", _spend(clock, 59)))
    harness.deliver(make_mail(subject="[slow] heavy but not too heavy", msgid="<within@customer.example>"))
    assert harness.runtime.spool.depth()["quarantine"] == 0
    assert stored_message_ids(harness.runtime.config.path) == ["<within@customer.example>"]


# -- claims without a verdict, in process: a new Worker after recover() is what a restart does ------------


def test_an_entry_a_dead_process_left_in_work_counts_one_claim_more_at_each_start(harness):
    spool = harness.runtime.spool
    _arrived(spool, make_mail(subject="first", msgid="<c1@customer.example>"))
    for claims in (1, 2):
        [entry] = spool.entries("incoming")
        assert spool.claim(entry) is not None  # claimed; then the process died without a verdict
        assert spool.recover() == 1
        assert spool.entries("incoming")[0].read_meta().extra["claims"] == claims


def test_a_verdict_settles_the_claims_a_failure_counts_an_attempt_instead(harness):
    def bug(ctx):
        if "[bug]" in (ctx.mail.subject or ""):
            raise RuntimeError("a bug on this mail")

    harness.runtime.services.thread_finders.insert(0, ("bug", bug))
    spool = harness.runtime.spool
    _arrived(spool, make_mail(subject="[bug] first", msgid="<c1@customer.example>"))
    spool.claim(spool.entries("incoming")[0])
    spool.recover()
    assert harness.worker.process_available() == 1
    [entry] = spool.entries("incoming")
    meta = entry.read_meta()
    assert meta.attempts == 1 and "claims" not in meta.extra
    assert "RuntimeError: a bug on this mail" in meta.last_error


def test_an_entry_with_an_unsettled_claim_is_processed_in_a_batch_of_its_own(harness):
    spool = harness.runtime.spool
    for n in range(3):
        _arrived(spool, make_mail(subject=f"mail {n}", msgid=f"<b{n}@customer.example>"))
    spool.claim(spool.entries("incoming")[0])
    spool.recover()  # the process that claimed it died

    assert harness.worker.process_available() == 1  # the suspect, alone
    assert harness.worker.process_available() == 2  # the others, together
    assert len(stored_message_ids(harness.runtime.config.path)) == 3


def _a_pill_before_an_innocent_mail(tmp_path: Path, db_url: str, workers: int) -> tuple[Path, Spool]:
    """A mail that kills the process running the pipeline, every time, and a good one behind it."""
    spool_settings = {"max_claims": 3, "max_attempts": 5, "workers": workers}
    config = write_config(tmp_path, db_url, daemon=FAULTS, spool=spool_settings)
    spool = _spool(config)
    _arrived(spool, make_mail(subject="[crash] the pill", msgid="<pill@customer.example>"))
    _arrived(spool, make_mail(subject="an innocent mail", msgid="<innocent@customer.example>"))
    return config, spool


# -- a real daemon killed by a mail, again and again ------------------------------------------------------


def test_a_mail_that_kills_the_daemon_is_quarantined_after_max_claims_and_the_mail_behind_is_stored(
    tmp_path: Path, db_url: str, daemon_factory
):
    # the pipeline in the daemon's own process, so the pill kills the daemon (a worker process: below)
    config, spool = _a_pill_before_an_innocent_mail(tmp_path, db_url, workers=0)

    for _ in range(3):  # each start claims the pill and dies of it (SIGKILL, as a segfault would)
        result = mailgate(config, "serve", timeout=120)
        assert result.returncode == -signal.SIGKILL, result.stdout.decode(errors="replace")[-2000:]
    assert stored_message_ids(config) == []

    daemon = daemon_factory(config)
    wait_for(
        lambda: stored_message_ids(config) == ["<innocent@customer.example>"],
        timeout=60,
        message="the innocent mail stored",
    )
    [pill] = spool.entries("quarantine")
    meta = pill.read_meta()
    assert "poison pill: claimed 3 times without a verdict" in meta.last_error
    assert meta.attempts == 0
    wait_for(
        lambda: spool.depth() == {"incoming": 0, "work": 0, "quarantine": 1},
        message="the spool settled after the commit",
    )
    assert daemon.alive
    daemon.send(make_mail(subject="after the pill", msgid="<after@customer.example>"))
    wait_for(lambda: "<after@customer.example>" in stored_message_ids(config), message="the door and worker go on")

    daemon.stop()
    assert "claims" not in spool.replay(pill).read_meta().extra  # a replay is a fresh start


def test_a_mail_that_kills_its_worker_process_is_quarantined_after_max_claims_and_the_daemon_stays_up(
    tmp_path: Path, db_url: str, daemon_factory
):
    config, spool = _a_pill_before_an_innocent_mail(tmp_path, db_url, workers=1)

    daemon = daemon_factory(config)  # its worker dies of the pill, is started again, dies again …
    wait_for(
        lambda: stored_message_ids(config) == ["<innocent@customer.example>"],
        timeout=120,
        message="the innocent mail stored",
    )
    wait_for(lambda: len(spool.entries("quarantine")) == 1, message="the pill quarantined")
    [pill] = spool.entries("quarantine")
    assert "poison pill: claimed 3 times without a verdict" in pill.read_meta().last_error
    assert daemon.log().count("worker process ended") == 3 and daemon.alive
    daemon.send(make_mail(subject="after the pill", msgid="<after@customer.example>"))
    wait_for(lambda: "<after@customer.example>" in stored_message_ids(config), message="the door and worker go on")


# -- SIGTERM with a mail mid-pipeline ---------------------------------------------------------------------


def test_sigterm_exits_within_the_grace_with_a_mail_mid_pipeline_and_the_restart_stores_it(
    tmp_path: Path, db_url: str, daemon_factory
):
    config = write_config(tmp_path, db_url, daemon={**FAULTS, "stop_grace": "2s"}, spool={"workers": 0})
    daemon = daemon_factory(config)
    daemon.send(make_mail(subject="[wedge] a slow one", msgid="<wedge@customer.example>"))
    wait_for(lambda: (load_config(config).data_dir / "wedged-once").exists(), message="the worker stuck on the mail")

    daemon.proc.send_signal(signal.SIGTERM)
    try:
        code = daemon.proc.wait(timeout=60)  # far more than the 2 s grace; the wedge alone lasts 120 s
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the daemon did not exit after SIGTERM:\n{daemon.log()[-3000:]}") from None
    assert code == 0
    assert "stop grace spent" in daemon.log()
    spool = _spool(config)
    assert len(spool.entries("work")) == 1  # left claimed; the next start puts it back
    assert stored_message_ids(config) == []

    daemon_factory(config)
    wait_for(
        lambda: stored_message_ids(config) == ["<wedge@customer.example>"],
        timeout=60,
        message="the mail stored after the restart",
    )
    wait_for(
        lambda: spool.depth() == {"incoming": 0, "work": 0, "quarantine": 0},
        message="the spool settled after the commit",
    )


# -- the settings -----------------------------------------------------------------------------------------


def test_the_budget_claims_grace_and_busy_timeout_are_read_and_checked(make_config):
    config = load_config(
        make_config(
            spool={"max_claims": 2, "mail_budget": "90s"},
            database={"busy_timeout": "500ms"},
            daemon={"stop_grace": "5s"},
        )
    )
    assert (config.spool.max_claims, config.spool.mail_budget, config.database.busy_timeout) == (2, 90.0, 0.5)
    assert parse_settings(config).stop_grace == 5.0
    defaults = load_config(make_config())
    assert (defaults.spool.max_claims, defaults.spool.mail_budget, parse_settings(defaults).stop_grace) == (3, 60, 20)
    with pytest.raises(ConfigError, match=r"spool\.max_claims: expected an integer >= 1"):
        load_config(make_config(spool={"max_claims": 0}))
    with pytest.raises(ConfigError, match=r"daemon\.stop_grase: unknown key"):
        parse_settings(load_config(make_config(daemon={"stop_grase": "5s"})))


def test_a_worker_loads_what_it_needs_before_it_claims_a_mail_so_a_restart_charges_no_mail(daemon):
    """The language model takes seconds to load on a busy machine: loaded inside the first batch, a daemon
    killed meanwhile would charge the first mail a claim at every restart and quarantine it as a poison pill."""
    daemon.send(make_mail(subject="The first mail after a start", msgid="<first-after-start@customer.example>"))
    wait_for(lambda: "msg=message " in daemon.log(), timeout=60, message="the mail stored")
    log = daemon.log()
    assert 'msg="worker ready"' in log
    assert log.index('msg="worker ready"') < log.index("msg=message ")
