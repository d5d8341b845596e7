"""Mail commands: read only from the top of the new text, checked all or nothing (pure functions)."""

from __future__ import annotations

import pytest

from mailgate.config import AgentConfig
from mailgate.domain.command_plan import plan
from mailgate.domain.commands import Command, Directory, Draft, TicketInfo, parse_commands

BOB = AgentConfig(address="bob@example.com", name="Bob Smith")
CAROL = AgentConfig(address="carol@example.com", name="Carol")
TICKETS = {7: TicketInfo(7, "open", None), 8: TicketInfo(8, "closed", None), 9: TicketInfo(9, "open", 7)}
ENV = Directory(
    agents=(BOB, CAROL),
    queues=("support", "billing"),
    canned=frozenset({"refund"}),
    is_ours=lambda a: a.startswith("support@"),
    find_ticket=TICKETS.get,
)


def draft(**changes):
    base = dict(
        number=3,
        status="new",
        queue="support",
        priority="normal",
        assignee=None,
        tags=(),
        watchers=(),
        customer="alice@customer.example",
        time_spent=0,
        spam=False,
    )
    return Draft(**{**base, **changes})


def run(text, **changes):
    commands, _rest = parse_commands(text)
    return plan(commands, draft(**changes), ENV, BOB)


class TestReading:
    def test_commands_are_the_lines_at_the_top_and_the_rest_is_the_answer(self):
        commands, rest = parse_commands("#take\n\n#priority  high\nHello Alice,\n#close is not read here\n")
        assert commands == [Command("take", (), "#take"), Command("priority", ("high",), "#priority  high")]
        assert rest == "Hello Alice,\n#close is not read here"

    def test_a_mail_without_commands_is_left_as_it_is(self):
        assert parse_commands("Hello,\n#close\n") == ([], "Hello,\n#close\n")

    @pytest.mark.parametrize("line", ["# Heading", "#42 is the order", "#", "##close", "#-x"])
    def test_a_hash_not_followed_by_a_letter_is_text(self, line):
        assert parse_commands(line + "\ntext")[0] == []

    def test_command_words_are_case_insensitive(self):
        assert parse_commands("#CLOSE")[0][0].word == "close"

    def test_a_mail_of_only_commands_has_no_answer(self):
        assert parse_commands("#close\n\n")[1] == ""


class TestCommands:
    def test_close_resolves_and_asks_for_the_resolved_notice(self):
        result = run("#close", status="open")
        assert result.ok and result.after.status == "resolved" and result.resolved_notice

    def test_pending_and_open(self):
        assert run("#pending", status="open").after.status == "pending"
        assert run("#open", status="pending").after.status == "open"

    def test_assign_by_address_name_local_part_or_me(self):
        for who in ("carol@example.com", "Carol", "carol", "CAROL"):
            assert run(f"#assign {who}").after.assignee == "carol@example.com"
        assert run("#assign me").after.assignee == "bob@example.com"
        assert run("#assign Bob Smith").after.assignee == "bob@example.com"
        assert run("#take").after.assignee == "bob@example.com"
        assert run("#assign none", assignee="bob@example.com").after.assignee is None

    def test_queue_priority_tags_time(self):
        result = run("#queue Billing\n#priority urgent\n#tag vip refund\n#tag -refund\n#time 1h30m\n#time 15m")
        assert result.ok
        after = result.after
        assert (after.queue, after.priority, after.tags, after.time_spent) == ("billing", "urgent", ("vip",), 6300)
        assert result.results[-1].text == "+15m, 1h45m in total"

    def test_cc_and_watch_add_watchers_but_never_the_customer_or_our_own_address(self):
        result = run("#cc Dan <dan@customer.example>, alice@customer.example\n#watch")
        assert result.after.watchers == ("dan@customer.example", "bob@example.com")
        assert not run("#cc support@example.com").ok
        assert run("#cc -dan@customer.example", watchers=("dan@customer.example",)).after.watchers == ()

    def test_note_template_spam_fwd_help_are_effects(self):
        assert run("#note").note
        assert run("#template refund").canned == ["refund"]
        spam = run("#spam")
        assert spam.spam and spam.after.spam and not spam.sends_to_customer
        assert run("#help").help
        env = Directory(agents=(BOB,), queues=("support",), forwarded_sender="eve@customer.example")
        fwd = plan(parse_commands("#fwd")[0], draft(), env, BOB)
        assert fwd.ok and fwd.forward and "eve@customer.example" in fwd.results[0].text

    def test_spam_may_block_the_sender_and_notspam_may_allow_them(self):
        assert run("#spam block").list_sender and not run("#spam").list_sender
        back = run("#notspam allow", spam=True)
        assert back.ok and back.notspam and back.list_sender and not back.after.spam and back.sends_to_customer
        assert not run("#spam\n#notspam").ok
        assert not run("#spam everyone").ok

    def test_merge_closes_this_ticket_and_names_the_target(self):
        result = run("#merge 7", status="open")
        assert result.ok and result.merge_into == 7 and result.after.status == "closed"
        assert run("#merge #7").merge_into == 7


class TestFailures:
    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("#assign zed", "unknown agent 'zed'"),
            ("#priority extreme", "priority must be one of low, normal, high, urgent"),
            ("#queue nowhere", "unknown queue 'nowhere' (queues: support, billing)"),
            ("#time soon", "expected a duration"),
            ("#merge 3", "cannot be merged into itself"),
            ("#merge 99", "there is no ticket #99"),
            ("#merge 8", "ticket #8 is closed"),
            ("#merge 9", "merged into #7"),
            ("#template nope", "no canned answer 'nope' (there are: refund)"),
            ("#fwd", "found no forwarded mail"),
            ("#frobnicate", "unknown command #frobnicate"),
            ("#close now", "takes no argument"),
            ("#cc not-an-address", "not a mail address"),
        ],
    )
    def test_a_failed_command_says_why(self, text, reason):
        result = run(text)
        assert not result.ok
        assert reason in result.results[-1].text

    def test_one_failure_fails_the_whole_mail_and_each_line_has_its_result(self):
        result = run("#take\n#priority extreme\n#close", status="open")
        assert not result.ok
        assert [r.ok for r in result.results] == [True, False, True]
        assert not result.sends_to_customer

    def test_a_closed_ticket_cannot_be_reopened_by_command(self):
        result = run("#open", status="closed")
        assert not result.ok and "stays closed" in result.results[0].text

    def test_a_canned_answer_cannot_go_with_a_note(self):
        result = run("#note\n#template refund")
        assert not result.ok and "cannot go with #note" in result.results[-1].text

    def test_a_status_change_after_a_merge_fails(self):
        assert not run("#merge 7\n#open", status="open").ok
