"""[sla]: per queue and priority targets, in business hours or around the clock; errors name the key."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailgate.app import build
from mailgate.config import load_config
from mailgate.domain.sla import parse_sla
from mailgate.errors import ConfigError
from mailgate.ops.metrics import parse_listen
from tests.helpers import ROOT

PARIS = ZoneInfo("Europe/Paris")
OFFICE = {
    "timezone": "Europe/Paris",
    "hours": {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2026-01-01"],
}


def sla_section(**queue: object) -> dict[str, object]:
    return {"queues": {"support": {"first_response": "4h", "resolution": "16h", "business_hours": OFFICE, **queue}}}


def test_four_business_hours_from_friday_16_00_fall_due_on_monday_at_noon(make_config):
    sla = parse_sla(load_config(make_config(sla=sla_section())))
    friday_4pm = datetime(2026, 1, 9, 16, 0, tzinfo=PARIS)
    due = sla.deadlines("support", "normal", friday_4pm)
    assert due.first_response == datetime(2026, 1, 12, 12, 0, tzinfo=PARIS)
    assert due.resolution == datetime(2026, 1, 13, 16, 0, tzinfo=PARIS)  # 16h = 1h Fri + 8h Mon + 7h Tue
    assert sla.elapsed("support", friday_4pm, due.first_response) == timedelta(hours=4)


def test_a_priority_overrides_the_queue_target_key_by_key(make_config):
    sla = parse_sla(load_config(make_config(sla=sla_section(priority={"urgent": {"first_response": "1h"}}))))
    monday_9am = datetime(2026, 1, 12, 9, 0, tzinfo=PARIS)
    urgent = sla.deadlines("support", "urgent", monday_9am)
    assert urgent.first_response == datetime(2026, 1, 12, 10, 0, tzinfo=PARIS)
    assert urgent.resolution == sla.deadlines("support", "normal", monday_9am).resolution


def test_without_business_hours_the_clock_runs_around_the_clock(make_config):
    sla = parse_sla(load_config(make_config(sla={"queues": {"support": {"first_response": "4h"}}})))
    saturday = datetime(2026, 1, 10, 22, 0, tzinfo=UTC)
    due = sla.deadlines("support", "normal", saturday)
    assert due.first_response == datetime(2026, 1, 11, 2, 0, tzinfo=UTC)
    assert due.resolution is None


def test_a_queue_without_targets_has_no_deadlines(make_config):
    sla = parse_sla(load_config(make_config(sla=sla_section())))
    due = sla.deadlines("sales", "normal", datetime(2026, 1, 9, tzinfo=UTC))
    assert (due.first_response, due.resolution) == (None, None)


def test_defaults_and_escalation_ladder(make_config):
    sla = parse_sla(load_config(make_config()))
    assert (sla.pending_reminder_days, sla.pending_resolve_days, sla.reopen_days) == (3, 4, 7)
    assert sla.digest_at is None and sla.sweep_interval == 60 and sla.warn_before == timedelta(hours=1)
    assert [sla.raised(p) for p in ("low", "normal", "high", "urgent", "odd")] == [
        "normal",
        "high",
        "urgent",
        "urgent",
        "urgent",
    ]


def test_timers_read_their_numbers_from_config(make_config):
    sla = parse_sla(
        load_config(
            make_config(
                sla={"digest_at": "07:30", "pending_reminder_days": 2, "pending_resolve_days": 5, "warn_before": "30m"},
                lifecycle={"reopen_days": 10},
            )
        )
    )
    assert sla.digest_at == time(7, 30)
    assert (sla.pending_reminder_days, sla.pending_resolve_days, sla.reopen_days) == (2, 5, 10)
    assert sla.warn_before == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"warn_befor": "1h"}, r"sla\.warn_befor: unknown key"),
        ({"digest_at": "8 o'clock"}, r"sla\.digest_at: expected a time of day"),
        ({"timezone": "Mars/Olympus"}, r"sla\.timezone: unknown timezone"),
        ({"pending_reminder_days": -1}, r"sla\.pending_reminder_days: expected an integer >= 0"),
        ({"queues": {"support": {"first_response": "soon"}}}, r"sla\.queues\.support\.first_response: expected a dur"),
        ({"queues": {"support": {"first_response": "0h"}}}, r"first_response: expected a duration > 0"),
        ({"queues": {"support": {"resolutoin": "1d"}}}, r"sla\.queues\.support\.resolutoin: unknown key"),
        (
            {"queues": {"support": {"priority": {"critical": {"first_response": "1h"}}}}},
            r"sla\.queues\.support\.priority\.critical: unknown priority",
        ),
        (
            {"queues": {"support": {"business_hours": {"timezone": "Europe/Paris", "hours": {"mon": "9-17"}}}}},
            r"sla\.queues\.support\.business_hours: hours\.mon: expected intervals",
        ),
    ],
)
def test_a_bad_sla_section_stops_the_daemon_naming_the_key(make_config, section, message):
    config = load_config(make_config(sla=section))
    with pytest.raises(ConfigError, match=message):
        build(config)


def test_a_target_for_an_unknown_queue_is_an_error_when_queues_are_listed(make_config):
    config = load_config(make_config(queues=[{"name": "support"}], sla={"queues": {"suport": {"resolution": "1d"}}}))
    with pytest.raises(ConfigError, match=r"sla\.queues\.suport: no such queue"):
        parse_sla(config)


def test_the_commented_examples_in_config_example_toml_are_valid(tmp_path):
    """Uncommenting the [sla] and [metrics] examples gives a config the daemon accepts."""
    example = (ROOT / "config.example.toml").read_text()
    head, _, tail = example.partition("\n# [sla]\n")
    assert tail, "config.example.toml has no commented [sla] example"
    lines = [line[2:] for line in ("# [sla]\n" + tail).splitlines() if re.match(r"# (\[|\w+ = )", line)]
    config = tmp_path / "config.toml"
    config.write_text(head.replace('data_dir = "storage"', 'data_dir = "data"') + "\n" + "\n".join(lines) + "\n")
    loaded = load_config(config)
    sla = parse_sla(loaded)
    assert sla.queues["support"].business_hours and sla.digest_at == time(8, 0)
    assert parse_listen(loaded) == ("127.0.0.1", 9425)
