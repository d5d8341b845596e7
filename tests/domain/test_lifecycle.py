"""The status machine, follow-ups, ratings and the customer's own close (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from mailgate.config import parse_config
from mailgate.domain import lifecycle
from mailgate.domain.lifecycle import KEEP, NEW_TICKET, REOPEN
from mailgate.errors import ConfigError

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def ticket(status="new"):
    return SimpleNamespace(
        status=status,
        updated_at=None,
        pending_since=None,
        reminded_at=None,
        resolved_at=None,
        closed_at=None,
        first_response_at=None,
    )


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("new", "open"),
        ("open", "pending"),
        ("pending", "open"),
        ("open", "resolved"),
        ("pending", "resolved"),
        ("resolved", "open"),
        ("resolved", "closed"),
        ("new", "resolved"),
        ("open", "open"),
    ],
)
def test_allowed_transitions(current, target):
    assert lifecycle.transition_error(current, target) is None


@pytest.mark.parametrize(
    ("current", "target"),
    [("closed", "open"), ("closed", "resolved"), ("resolved", "pending"), ("open", "new"), ("open", "bogus")],
)
def test_forbidden_transitions_say_why(current, target):
    assert lifecycle.transition_error(current, target)


def test_a_closed_ticket_stays_closed_and_the_reason_says_so():
    assert "stays closed" in lifecycle.transition_error("closed", "open")


def test_resolving_sets_resolved_at_and_reopening_clears_it():
    t = ticket("open")
    assert lifecycle.set_status(t, "resolved", NOW)
    assert t.resolved_at == NOW and t.updated_at == NOW
    lifecycle.set_status(t, "open", NOW + timedelta(hours=1))
    assert t.resolved_at is None


def test_pending_sets_pending_since_and_clears_the_reminder_mark():
    t = ticket("open")
    t.reminded_at = NOW
    lifecycle.set_status(t, "pending", NOW)
    assert (t.pending_since, t.reminded_at) == (NOW, None)
    lifecycle.set_status(t, "open", NOW)
    assert t.pending_since is None


def test_closing_sets_closed_at_and_keeps_the_resolution_time():
    t = ticket("resolved")
    t.resolved_at = NOW
    lifecycle.set_status(t, "closed", NOW + timedelta(days=8))
    assert t.closed_at == NOW + timedelta(days=8) and t.resolved_at == NOW


def test_setting_the_same_status_changes_nothing():
    t = ticket("open")
    assert not lifecycle.set_status(t, "open", NOW)
    assert t.updated_at is None


def test_only_the_first_response_is_recorded():
    t = ticket("new")
    assert lifecycle.record_first_response(t, NOW)
    assert not lifecycle.record_first_response(t, NOW + timedelta(hours=1))
    assert t.first_response_at == NOW


@pytest.mark.parametrize(
    ("status", "resolved_ago", "expected"),
    [
        ("new", None, KEEP),
        ("open", None, KEEP),
        ("pending", None, REOPEN),
        ("resolved", timedelta(days=1), REOPEN),
        ("resolved", timedelta(days=7), REOPEN),
        ("resolved", timedelta(days=7, seconds=1), NEW_TICKET),
        ("closed", timedelta(days=1), NEW_TICKET),
    ],
)
def test_what_a_customer_follow_up_does(status, resolved_ago, expected):
    resolved_at = NOW - resolved_ago if resolved_ago else None
    assert lifecycle.followup_action(status, resolved_at, NOW, reopen_days=7) == expected


def test_a_resolved_ticket_is_due_for_closing_after_the_reopen_window():
    assert not lifecycle.close_due(NOW - timedelta(days=6), NOW, 7)
    assert lifecycle.close_due(NOW - timedelta(days=7, minutes=1), NOW, 7)
    assert not lifecycle.close_due(None, NOW, 7)


@pytest.mark.parametrize(
    ("text", "value", "comment"),
    [
        ("good", "good", ""),
        ("Good!", "good", ""),
        ("bad", "bad", ""),
        ("5", "5", ""),
        ("1", "1", ""),
        ("4/5", "4", ""),
        ("5 stars", "5", ""),
        ("  great.\n\nThanks, Alice", "good", "Thanks, Alice"),
        ("bad\nYou never called back.", "bad", "You never called back."),
    ],
)
def test_rating_replies(text, value, comment):
    assert lifecycle.parse_rating(text) == lifecycle.Rating(value, comment)


@pytest.mark.parametrize("text", ["", "6", "0", "good morning, the printer is on fire again", "not bad", "55"])
def test_replies_that_are_not_ratings(text):
    assert lifecycle.parse_rating(text) is None


@pytest.mark.parametrize("text", ["#close", "close", "Resolved.", "CLOSE\nthanks, all good now"])
def test_a_customer_closes_with_a_first_line_that_is_only_a_close_word(text):
    assert lifecycle.is_close_request(text, ("close", "resolved"))


@pytest.mark.parametrize("text", ["Please do not close this yet", "it is not resolved", "", "thanks\nclose"])
def test_close_words_inside_prose_do_not_close(text):
    assert not lifecycle.is_close_request(text, ("close", "resolved"))


def test_settings_defaults_and_errors(tmp_path):
    path = tmp_path / "config.toml"
    assert lifecycle.parse_settings(parse_config({}, path)) == lifecycle.LifecycleSettings()
    custom = lifecycle.parse_settings(
        parse_config(
            {"lifecycle": {"reopen_days": 3, "customer_close_words": ["Erledigt"], "stranger_policy": "hold"}}, path
        )
    )
    assert (custom.reopen_days, custom.customer_close_words, custom.stranger_policy) == (3, ("erledigt",), "hold")
    with pytest.raises(ConfigError, match=r"lifecycle\.stranger_policy"):
        lifecycle.parse_settings(parse_config({"lifecycle": {"stranger_policy": "drop"}}, path))
    with pytest.raises(ConfigError, match=r"lifecycle\.reopen_dayz"):
        lifecycle.parse_settings(parse_config({"lifecycle": {"reopen_dayz": 3}}, path))
