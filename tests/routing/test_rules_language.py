"""The rule language on real mails through the pipeline: every match field, operator, combinator, action."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import make_mail
from tests.rulekit import RouteRecorder, last_ticket, rules_config, ticket_count, write_rules

ALICE = "Alice <alice@customer.example>"


@pytest.fixture
def routed(tmp_path, make_config, harness_factory):
    """routed(rules_toml) -> a harness whose rules/ holds that one file."""

    def _make(text: str, **sections):
        directory = write_rules(tmp_path / "rules", **{"10-test": text})
        return harness_factory(rules_config(make_config, directory, **sections))

    return _make


def hit_rule(match: str) -> str:
    return f'[[rule]]\nname = "the-rule"\nqueue = "hit"\nmatch = {match}\n'


# (match table, mail that matches, mail that does not): mail = (make_mail kwargs, deliver kwargs)
FIELD_CASES = {
    "from equals, case-insensitive": (
        '{ from = "vip@big.example" }',
        ({"sender": "V <VIP@Big.Example>"}, {}),
        ({"sender": ALICE}, {}),
    ),
    "from_domain": (
        '{ from_domain = "big.example" }',
        ({"sender": "x@big.example"}, {}),
        ({"sender": "x@notbig.example"}, {}),
    ),
    "envelope_from": (
        '{ envelope_from = { glob = "bounce-*@lists.example" } }',
        ({}, {"mail_from": "bounce-77@lists.example"}),
        ({}, {}),
    ),
    "to": ('{ to = "billing@example.com" }', ({"to": "Billing <billing@example.com>"}, {}), ({}, {})),
    "cc": ('{ cc = { contains = "legal" } }', ({"cc": "legal@example.com"}, {}), ({"cc": "bob@x.example"}, {})),
    "delivered_to, from the envelope": (
        '{ delivered_to = "sales@example.com" }',
        ({}, {"rcpt_tos": ("sales@example.com",)}),
        ({}, {}),
    ),
    "delivered_to, from the Delivered-To header": (
        '{ delivered_to = "sales@example.com" }',
        ({"headers": {"Delivered-To": "sales@example.com"}}, {}),
        ({}, {}),
    ),
    "recipient (to, cc or delivered_to)": (
        '{ recipient = "sales@example.com" }',
        ({"cc": "sales@example.com"}, {}),
        ({}, {}),
    ),
    "subject contains": (
        '{ subject = { contains = "invoice" } }',
        ({"subject": "Your INVOICE 42"}, {}),
        ({"subject": "Printer"}, {}),
    ),
    "body regex": (
        r"{ body = { regex = '\border-\d{4}\b' } }",
        ({"body": "my Order-1234 is late"}, {}),
        ({"body": "my order-12 is late"}, {}),
    ),
    "header by name": (
        '{ header = { "X-Mailer" = { contains = "outlook" } } }',
        ({"headers": {"X-Mailer": "Microsoft Outlook 16"}}, {}),
        ({}, {}),
    ),
    "header present": (
        '{ header = { "X-Ticket-Ref" = { present = true } } }',
        ({"headers": {"X-Ticket-Ref": ""}}, {}),
        ({}, {}),
    ),
    "attachment present": ("{ attachment = true }", ({"attachments": [("a.txt", "text/plain", b"x")]}, {}), ({}, {})),
    "attachment_type": (
        '{ attachment_type = { glob = "image/*" } }',
        ({"attachments": [("s.png", "image/png", b"\x89PNG")]}, {}),
        ({"attachments": [("a.txt", "text/plain", b"x")]}, {}),
    ),
    "attachment_name": (
        '{ attachment_name = { glob = "*.PDF" } }',
        ({"attachments": [("Invoice.pdf", "application/pdf", b"%PDF")]}, {}),
        ({"attachments": [("a.txt", "text/plain", b"x")]}, {}),
    ),
    "size": ('{ size = { gt = "20KB" } }', ({"body": "x" * 30_000}, {}), ({}, {})),
    "spam_score": (
        "{ spam_score = { ge = 3 } }",
        ({"headers": {"X-Spam-Score": "3.5"}}, {}),
        ({"headers": {"X-Spam-Score": "2.9"}}, {}),
    ),
}

OPERATOR_CASES = {
    "equals takes a list (any of)": (
        '{ subject = ["alpha", "beta"] }',
        ({"subject": "BETA"}, {}),
        ({"subject": "beta gamma"}, {}),
    ),
    "equals, explicit": ('{ subject = { equals = "hello" } }', ({"subject": "Hello"}, {}), ({"subject": "Hello!"}, {})),
    "contains, Cyrillic, any case": (
        '{ subject = { contains = "счёт" } }',
        ({"subject": "Ваш СЧЁТ №5"}, {}),
        ({"subject": "Ваш заказ"}, {}),
    ),
    "glob is the whole value": (
        '{ subject = { glob = "re*fund" } }',
        ({"subject": "Refund"}, {}),
        ({"subject": "a refund"}, {}),
    ),
    "regex searches anywhere": (
        "{ subject = { regex = 'fact(ure|uration)' } }",
        ({"subject": "Ma FACTURE de mars"}, {}),
        ({"subject": "facteur"}, {}),
    ),
    "case_sensitive": (
        '{ subject = { contains = "VIP", case_sensitive = true } }',
        ({"subject": "VIP request"}, {}),
        ({"subject": "vip request"}, {}),
    ),
    "present = false": (
        '{ header = { "X-Campaign" = { present = false } } }',
        ({}, {}),
        ({"headers": {"X-Campaign": "c1"}}, {}),
    ),
    "number lt": (
        "{ spam_score = { lt = 0 } }",
        ({"headers": {"X-Spam-Score": "-1.5"}}, {}),
        ({"headers": {"X-Spam-Score": "0.5"}}, {}),
    ),
    "number le / equals": (
        "{ all = [ { spam_score = { le = 2 } }, { spam_score = { equals = 2 } } ] }",
        ({"headers": {"X-Spam-Score": "2"}}, {}),
        ({"headers": {"X-Spam-Score": "1"}}, {}),
    ),
    "no score: no number matches": (
        "{ spam_score = { lt = 100 } }",
        ({"headers": {"X-Spam-Score": "1"}}, {}),
        ({}, {}),
    ),
    "several keys: all must hold": (
        '{ from_domain = "big.example", subject = { contains = "urgent" } }',
        ({"sender": "a@big.example", "subject": "urgent"}, {}),
        ({"sender": "a@big.example", "subject": "later"}, {}),
    ),
    "all": (
        '{ all = [ { from_domain = "big.example" }, { subject = { contains = "urgent" } } ] }',
        ({"sender": "a@big.example", "subject": "URGENT"}, {}),
        ({"subject": "urgent"}, {}),
    ),
    "any": (
        '{ any = [ { from_domain = "big.example" }, { subject = { contains = "urgent" } } ] }',
        ({"subject": "urgent"}, {}),
        ({"subject": "later"}, {}),
    ),
    "not": ('{ not = { from_domain = "customer.example" } }', ({"sender": "x@other.example"}, {}), ({}, {})),
    "nested": (
        '{ any = [ { all = [ { subject = { contains = "a" } }, { not = { subject = { contains = "b" } } } ] },'
        " { cc = { present = true } } ] }",
        ({"subject": "xa"}, {}),
        ({"subject": "ab"}, {}),
    ),
    "empty match matches every mail": ("{}", ({}, {}), None),
}


@pytest.mark.parametrize("match, hit, miss", FIELD_CASES.values(), ids=FIELD_CASES.keys())
def test_each_match_field_routes_what_it_names(routed, match, hit, miss):
    check_case(routed(hit_rule(match)), hit, miss)


@pytest.mark.parametrize("match, hit, miss", OPERATOR_CASES.values(), ids=OPERATOR_CASES.keys())
def test_each_operator_and_combinator(routed, match, hit, miss):
    check_case(routed(hit_rule(match)), hit, miss)


def check_case(h, hit, miss):
    h.deliver(make_mail(**hit[0]), **hit[1])
    assert last_ticket(h)["queue"] == "hit"
    assert last_ticket(h)["rules"] == ["the-rule"]
    if miss is not None:
        h.deliver(make_mail(**miss[0]), **miss[1])
        assert last_ticket(h)["queue"] == "support"
        assert last_ticket(h)["rules"] == []


def test_first_matching_rule_wins_each_action_and_tags_add_up(routed):
    h = routed("""
        [[rule]]
        name = "first"
        queue = "billing"
        tags = ["a"]
        match = { subject = { contains = "invoice" } }

        [[rule]]
        name = "second"
        queue = "sales"
        priority = "high"
        tags = ["b", "a"]
        match = { subject = { contains = "invoice" } }

        [[rule]]
        name = "not-matching"
        priority = "low"
        match = { subject = { contains = "nothing like this" } }
        """)
    h.deliver(make_mail(subject="invoice"))
    assert last_ticket(h) | {"number": 0, "messages": 0} == {
        "number": 0,
        "messages": 0,
        "queue": "billing",
        "priority": "high",
        "tags": ["a", "b"],
        "assignee": None,
        "spam": False,
        "rules": ["first", "second"],
    }


def test_stop_ends_the_walk_and_disabled_rules_do_nothing(routed):
    h = routed("""
        [[rule]]
        name = "off"
        enabled = false
        queue = "other"
        match = {}

        [[rule]]
        name = "vip"
        queue = "vip"
        stop = true
        match = { from_domain = "big.example" }

        [[rule]]
        name = "after"
        priority = "urgent"
        tags = ["late"]
        match = {}
        """)
    h.deliver(make_mail(sender="a@big.example"))
    assert last_ticket(h)["queue"] == "vip"
    assert last_ticket(h)["priority"] == "normal"
    assert last_ticket(h)["tags"] == []
    assert last_ticket(h)["rules"] == ["vip"]
    h.deliver(make_mail(sender="a@small.example"))
    assert (last_ticket(h)["queue"], last_ticket(h)["priority"]) == ("support", "urgent")


def test_assign_priority_template_and_auto_reply_reach_the_ticket_and_the_reactors(routed):
    h = routed("""
        [[rule]]
        name = "vip"
        queue = "vip"
        priority = "urgent"
        assign = "Bob@Example.com"
        template = "acknowledgment_vip"
        auto_reply = false
        match = { from_domain = "big.example" }
        """)
    recorder = RouteRecorder(h)
    h.deliver(make_mail(sender="a@big.example"))
    ticket = last_ticket(h)
    assert (ticket["queue"], ticket["priority"], ticket["assignee"]) == ("vip", "urgent", "bob@example.com")
    route = recorder.last
    assert (route.template, route.auto_reply, route.spam) == ("acknowledgment_vip", False, False)
    h.deliver(make_mail(sender="a@small.example"))
    assert (recorder.last.template, recorder.last.auto_reply, recorder.last.queue) == ("", True, "support")


def test_spam_true_sends_the_ticket_to_the_spam_queue_without_acknowledgment(routed):
    h = routed("""
        [[rule]]
        name = "crypto"
        spam = true
        assign = "bob@example.com"
        match = { subject = { regex = 'bitcoin' } }
        """)
    recorder = RouteRecorder(h)
    h.deliver(make_mail(subject="Double your Bitcoin"))
    ticket = last_ticket(h)
    assert (ticket["queue"], ticket["spam"], ticket["assignee"]) == ("spam", True, None)
    assert (recorder.last.spam, recorder.last.auto_reply) == (True, False)


def test_drop_stores_nothing_and_logs_one_line(routed, caplog):
    h = routed("""
        [[rule]]
        name = "blocklist"
        drop = true
        match = { from_domain = "spam-king.example" }
        """)
    with caplog.at_level(logging.INFO):
        h.deliver(make_mail(sender="boss@spam-king.example", msgid="<d1@spam-king.example>"))
    assert ticket_count(h) == 0
    dropped = [r for r in caplog.records if r.getMessage() == "dropped by rule"]
    assert [(r.rules, r.msgid) for r in dropped] == [("blocklist", "<d1@spam-king.example>")]
    assert not h.runtime.spool.entries("incoming")


def test_drop_also_keeps_a_blocked_sender_out_of_an_existing_ticket(routed):
    h = routed("""
        [[rule]]
        name = "blocklist"
        drop = true
        match = { from_domain = "spam-king.example" }
        """)
    h.deliver(make_mail(subject="Printer"))
    h.deliver(make_mail(subject="Re: Printer [#1]", sender="x@spam-king.example"))
    h.deliver(make_mail(subject="Re: Printer [#1]"))
    assert last_ticket(h)["messages"] == 2


def test_a_follow_up_is_not_routed_again(routed):
    h = routed(hit_rule('{ subject = { contains = "invoice" } }'))
    h.deliver(make_mail(subject="Printer"))
    h.deliver(make_mail(subject="Re: Printer [#1] invoice"))
    assert (last_ticket(h)["queue"], last_ticket(h)["messages"]) == ("support", 2)


def test_files_are_read_in_name_order(tmp_path, make_config, harness_factory):
    directory = write_rules(
        tmp_path / "rules",
        **{
            "20-late": hit_rule("{}").replace('"hit"', '"other"').replace("the-rule", "late"),
            "10-early": hit_rule("{}"),
        },
    )
    (directory / "README.md").write_text("not a rule file")
    (directory / ".#10-early.toml").write_text("editor lock file, not TOML [")
    h = harness_factory(rules_config(make_config, directory))
    h.deliver(make_mail())
    assert (last_ticket(h)["queue"], last_ticket(h)["rules"]) == ("hit", ["the-rule"])


def test_without_rule_files_every_ticket_goes_to_the_default_queue(harness):
    harness.deliver(make_mail(subject="anything"))
    assert (last_ticket(harness)["queue"], last_ticket(harness)["rules"]) == ("support", [])
