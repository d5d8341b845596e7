"""The benchmark hook: routing against many rules runs end to end (its timing is bench/run.py's business)."""

from __future__ import annotations

from bench.rules_bench import load_synthetic, route_benchmark, sample_mails
from mailgate.pipeline.steps.route import decide
from mailgate.routing.facts import MailFacts
from mailgate.routing.spam import SpamSettings


def test_the_synthetic_rules_load_through_the_real_loader():
    ruleset = load_synthetic(500)
    assert len(ruleset.rules) == 500
    assert len({r.name for r in ruleset.rules}) == 500


def test_the_synthetic_rules_do_route_the_sample_mails():
    ruleset = load_synthetic(64)
    decisions = [
        decide(ruleset, MailFacts(mail, envelope), SpamSettings(), "support").decision
        for mail, envelope in sample_mails(40)
    ]
    assert any(d.rules for d in decisions), "some sample mails match some rules"
    assert any(not d.rules for d in decisions), "and some match none"


def test_route_benchmark_returns_microseconds_per_message():
    assert route_benchmark(n_rules=50, n_messages=5, repeat=1) > 0
