"""The shipped rules/ with config.example.toml: `rules explain` says what the pipeline then does.

Each sample mail is explained first (which must store nothing), then delivered
through the real pipeline; queue, priority, tags, assignee, spam, auto-reply,
template and the deciding rules must be what explain said, and what
rules/README.md documents for these examples.
"""

from __future__ import annotations

import json
import tomllib

import pytest
import tomli_w

from mailgate.cli import main
from tests.helpers import ROOT, mailgate, make_mail
from tests.rulekit import RouteRecorder, last_ticket, ticket_count

SAMPLES = {
    "vip by domain beats keywords (stop)": (
        {"sender": "Ann <ann@acme.example>", "subject": "Invoice is wrong, URGENT"},
        (),
        {"queue": "vip", "priority": "high", "tags": ["vip"], "rules": ["vip-customers"]},
    ),
    "vip by subdomain, even with a high spam score": (
        {"sender": "bo@eu.acme.example", "headers": {"X-Spam-Status": "Yes, score=9.1 required=5.0"}},
        (),
        {"queue": "vip", "spam": False, "rules": ["vip-customers"]},
    ),
    "billing by address": (
        {"to": "billing@example.com"},
        (),
        {"queue": "billing", "tags": ["billing"], "rules": ["billing-address"]},
    ),
    "sales by delivery address": ({}, ("sales-eu@example.com",), {"queue": "sales", "rules": ["sales-address"]}),
    "urgent by X-Priority header": (
        {"headers": {"X-Priority": "1 (Highest)"}},
        (),
        {"priority": "urgent", "rules": ["urgent-header"]},
    ),
    "French keyword": ({"subject": "Ma facture de mars"}, (), {"queue": "billing", "rules": ["billing-keywords"]}),
    "Russian keyword": ({"subject": "Счёт на оплату"}, (), {"queue": "billing", "tags": ["billing"]}),
    "English keyword in the body": ({"body": "Hello,\nI would like a refund.\n"}, (), {"queue": "billing"}),
    "outage in French": (
        {"subject": "Le site est en panne"},
        (),
        {"queue": "support", "priority": "urgent", "tags": ["outage"]},
    ),
    "outage in Russian": ({"subject": "Срочно: вход не работает"}, (), {"priority": "urgent"}),
    "logs attached": (
        {"attachments": [("app.log", "text/plain", b"ERROR boom\n")]},
        (),
        {"queue": "tech", "tags": ["has-logs"], "rules": ["technical-with-logs"]},
    ),
    "monitoring: filed, not acknowledged": (
        {"sender": "alerts@monitoring.example.com", "subject": "CPU high"},
        (),
        {"queue": "tech", "auto_reply": False, "tags": ["monitoring"]},
    ),
    "crypto spam by rule": (
        {"subject": "Bitcoin: double your profit"},
        (),
        {"queue": "spam", "spam": True, "auto_reply": False, "rules": ["crypto-spam"]},
    ),
    "spam by SpamAssassin score": (
        {"headers": {"X-Spam-Status": "Yes, score=7.5 required=5.0 tests=BAYES_99"}},
        (),
        {"queue": "spam", "spam": True, "rules": []},
    ),
    "nothing special: default queue": (
        {"subject": "Question"},
        (),
        {"queue": "support", "priority": "normal", "tags": [], "rules": []},
    ),
}


@pytest.fixture
def example_config(tmp_path, db_url):
    """config.example.toml as shipped, on the test database, with the shipped rules/."""
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    data["mailgate"].update(data_dir=str(tmp_path / "data"), database_url=db_url)
    data["smtp"]["listen"] = "127.0.0.1:0"
    data["rules"]["dir"] = str(ROOT / "rules")
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def explain(config, path, *extra):
    return main(["--config", str(config), "rules", "explain", str(path), *extra])


@pytest.mark.parametrize("mail, rcpt, wanted", SAMPLES.values(), ids=SAMPLES.keys())
def test_explain_says_what_the_pipeline_then_does(
    example_config, harness_factory, tmp_path, capsys, mail, rcpt, wanted
):
    h = harness_factory(example_config)
    recorder = RouteRecorder(h)
    raw = make_mail(**mail)
    (tmp_path / "mail.eml").write_bytes(raw)
    assert explain(example_config, tmp_path / "mail.eml", "--format", "json", *(f"--rcpt={r}" for r in rcpt)) == 0
    said = json.loads(capsys.readouterr().out)["decision"]
    assert ticket_count(h) == 0, "explain stores nothing"

    h.deliver(raw, rcpt_tos=rcpt or ("support@example.com",))
    ticket = last_ticket(h)
    done = {
        "queue": ticket["queue"],
        "priority": ticket["priority"],
        "tags": ticket["tags"],
        "assignee": ticket["assignee"],
        "spam": ticket["spam"],
        "rules": ticket["rules"],
        "auto_reply": recorder.last.auto_reply,
        "template": recorder.last.template,
    }
    assert {k: said[k] for k in done} == done
    assert {k: done[k] for k in wanted} == wanted


def test_a_dropped_mail_is_explained_as_dropped_and_stored_nowhere(example_config, harness_factory, tmp_path, capsys):
    h = harness_factory(example_config)
    raw = make_mail(sender="deals@bulk-offers.example")
    (tmp_path / "mail.eml").write_bytes(raw)
    assert explain(example_config, tmp_path / "mail.eml", "--format", "json") == 0
    said = json.loads(capsys.readouterr().out)["decision"]
    assert (said["drop"], said["rules"]) == (True, ["blocked-domain"])
    h.deliver(raw)
    assert ticket_count(h) == 0


def test_the_text_format_shows_every_rule_why_and_the_decision(example_config, tmp_path, capsys):
    (tmp_path / "mail.eml").write_bytes(make_mail(subject="Ma facture", sender="jean@client.example"))
    assert explain(example_config, tmp_path / "mail.eml") == 0
    out = capsys.readouterr().out
    assert "[not matched] vip-customers  (10-vip.toml:5)" in out
    assert '✗ from_domain equals ["bigcorp.example", "acme.example"]: no (from_domain is "client.example")' in out
    assert "[matched] billing-keywords  (30-keywords.toml:4)" in out
    assert '✓ subject contains ["invoice", "facture", "счёт", "счет"]: yes (subject is "Ma facture")' in out
    assert '-> queue = "billing"' in out
    assert "[not matched] technical-with-logs" in out and "✗ not: no (inner matched)" in out
    decision = out.split("Decision:")[1]
    assert "queue:      billing" in decision and "rules:      billing-keywords" in decision


def test_explain_shows_actions_an_earlier_rule_already_decided(example_config, tmp_path, capsys):
    (tmp_path / "mail.eml").write_bytes(make_mail(to="billing@example.com", subject="facture"))
    explain(example_config, tmp_path / "mail.eml", "--format", "json")
    rules = {r["rule"]: r for r in json.loads(capsys.readouterr().out)["rules"]}
    assert rules["billing-keywords"]["effects"] == [
        'queue = "billing" (not applied: rule \'billing-address\' set queue = "billing" first)',
        'tags += ["billing"]',
    ]
    assert rules["billing-address"]["file"].endswith("20-addresses.toml") and rules["billing-address"]["line"] == 7


def test_explain_as_a_command_and_with_broken_rules(example_config, tmp_path):
    (tmp_path / "mail.eml").write_bytes(make_mail(subject="invoice"))
    result = mailgate(example_config, "rules", "explain", str(tmp_path / "mail.eml"), "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["decision"]["queue"] == "billing"

    broken = tmp_path / "rules"
    broken.mkdir()
    (broken / "x.toml").write_text("[[rule]]\nname = 'x'\nqueue = 'nowhere'\nmatch = {}\n")
    data = tomllib.loads(example_config.read_text())
    data["rules"]["dir"] = str(broken)
    example_config.write_text(tomli_w.dumps(data))
    result = mailgate(example_config, "rules", "explain", str(tmp_path / "mail.eml"))
    assert result.returncode == 1
    assert "x.toml:3:" in result.stderr.decode()


def test_explain_reads_the_sender_lists_the_pipeline_uses(example_config, harness_factory, tmp_path, capsys, clock):
    from mailgate.storage.models import SenderList

    h = harness_factory(example_config)
    with h.session() as s, s.begin():
        s.add(
            SenderList(entry="pest@nuisance.example", verdict="block", actor="bob@example.com", created_at=clock.now())
        )
    raw = make_mail(sender="pest@nuisance.example", subject="invoice")
    (tmp_path / "mail.eml").write_bytes(raw)
    assert explain(example_config, tmp_path / "mail.eml", "--format", "json") == 0
    said = json.loads(capsys.readouterr().out)
    assert (said["decision"]["queue"], said["decision"]["spam"]) == ("spam", True)
    assert said["spam"] == {
        "spam": True,
        "source": "list",
        "reason": "pest@nuisance.example is on the block list",
        "routed_queue": "billing",
    }
    h.deliver(raw)
    assert (last_ticket(h)["queue"], last_ticket(h)["spam"]) == ("spam", True)
