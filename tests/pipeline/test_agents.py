"""Agents work by mail, through the real pipeline: relayed answers, commands, notes, proof, lifecycle."""

from __future__ import annotations

import email
from datetime import timedelta
from email import policy

import pytest
from sqlalchemy import select

from mailgate.storage.models import Event, Message, Outbox, Ticket, Watcher
from tests.helpers import address_of, make_mail

AGENTS = [{"address": "bob@example.com", "name": "Bob"}, {"address": "carol@example.com", "name": "Carol"}]
QUEUES = [{"name": "support", "agents": ["bob@example.com", "carol@example.com"]}, {"name": "billing"}]
NOTIFICATION_QUOTE = "> New ticket [#1] in queue support"


@pytest.fixture
def desk(make_config, harness_factory):
    return harness_factory(make_config(agents=AGENTS, queues=QUEUES))


def outbox(h, kind=None, to=None):
    """The mails mailgate wrote, oldest first, parsed: (row, message)."""
    with h.session() as s:
        rows = s.scalars(select(Outbox).order_by(Outbox.id)).all()
        found = [(r, email.message_from_bytes(r.raw, policy=policy.default)) for r in rows]
    return [(r, m) for r, m in found if (kind is None or r.kind == kind) and (to is None or to in r.rcpt_tos)]


def only(h, kind, to=None):
    found = outbox(h, kind, to)
    assert len(found) == 1, [(r.kind, r.rcpt_tos) for r, _ in outbox(h)]
    return found[0][1]


def body(message):
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def ticket(h, number=1):
    with h.session() as s:
        t = s.scalar(select(Ticket).where(Ticket.number == number))
        s.expunge_all()
        return t


def events(h, kind):
    with h.session() as s:
        return [e.detail for e in s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id))]


def open_ticket(h, **kwargs):
    """Alice writes; Bob gets the notification. Returns Bob's notification."""
    h.deliver(make_mail(subject="Printer on fire", msgid="<q1@customer.example>", **kwargs))
    return only(h, "notify_new_ticket", "bob@example.com")


def agent_reply(h, notification, text, sender="Bob <bob@example.com>", headers=None, to=None):
    """An agent answers the notification with their mail client: Reply, type on top, quote below."""
    quoted = "\n".join("> " + line for line in body(notification).splitlines())
    raw = make_mail(
        subject="Re: " + notification["Subject"],
        sender=sender,
        to=to or notification["Reply-To"],
        in_reply_to=notification["Message-ID"],
        body=f"{text}\n\nOn Mon, Jan 5, 2026 at 9:00 AM Example Support <support@example.com> wrote:\n{quoted}\n",
        headers=headers,
    )
    h.deliver(raw, mail_from=sender.split("<")[-1].rstrip(">"), rcpt_tos=(to or notification["Reply-To"],))


def customer_reply(h, text, kind="acknowledgment", sender="Alice <alice@customer.example>", headers=None):
    """The customer presses Reply on our last mail of ``kind``: to its signed Reply-To, the token in the subject."""
    ours = outbox(h, kind, "alice@customer.example")[-1][1]
    h.deliver(
        make_mail(
            subject="Re: " + ours["Subject"],
            sender=sender,
            to=ours["Reply-To"],
            body=text,
            in_reply_to=ours["Message-ID"],
            headers=headers,
        ),
        rcpt_tos=(ours["Reply-To"],),
    )


class TestRelayedAnswers:
    def test_each_agent_notification_has_a_signed_reply_address_of_its_own(self, desk):
        bob = open_ticket(desk)
        carol = only(desk, "notify_new_ticket", "carol@example.com")
        assert bob["Reply-To"].addresses[0].display_name == "Example Support", "who the correspondent is"
        signed = bob["Reply-To"].addresses[0].addr_spec
        assert signed.startswith("support+1.") and signed.endswith("@example.com")
        assert signed != carol["Reply-To"].addresses[0].addr_spec

    def test_the_customer_gets_a_clean_answer_from_the_support_address(self, desk):
        notification = open_ticket(desk)
        agent_reply(desk, notification, "#take\nHello Alice,\nplease unplug the printer.\n\nBob")
        answer = only(desk, "agent_reply", "alice@customer.example")
        sender = answer["From"].addresses[0]
        assert (sender.display_name, sender.addr_spec) == ("Bob via Example Support", "support@example.com")
        text = body(answer)
        assert "please unplug the printer." in text
        for leak in ("bob@example.com", "#take", "New ticket", "wrote:", address_of(notification["Reply-To"])):
            assert leak not in answer.as_string()
        assert answer["Subject"].startswith("[#1] ")
        answer_to = address_of(answer["Reply-To"])
        assert answer_to.startswith("support+1.") and answer_to != address_of(notification["Reply-To"])
        assert answer["In-Reply-To"] == "<q1@customer.example>"
        t = ticket(desk)
        assert (t.status, t.assignee) == ("open", "bob@example.com")
        assert t.first_response_at == desk.runtime.services.clock.now()

    def test_the_agent_mail_is_stored_once_as_what_the_customer_read(self, desk):
        agent_reply(desk, open_ticket(desk), "Please unplug it.")
        with desk.session() as s:
            messages = s.scalars(select(Message).order_by(Message.id)).all()
            assert [(m.direction, m.author) for m in messages] == [("in", ""), ("out", "bob@example.com")]
            assert messages[1].new_text == "Please unplug it."
            assert "wrote:" in messages[1].text  # the full original is kept

    def test_the_customers_reply_threads_back_and_the_assignee_is_notified(self, desk):
        agent_reply(desk, open_ticket(desk), "#take\nPlease unplug it.")
        answer = only(desk, "agent_reply")
        desk.deliver(
            make_mail(
                subject="Re: " + answer["Subject"],
                to=answer["Reply-To"],
                in_reply_to=answer["Message-ID"],
                body="Done, it is cold now.\n",
            ),
            rcpt_tos=(answer["Reply-To"],),
        )
        with desk.session() as s:
            assert s.scalar(select(Message).order_by(Message.id.desc())).ticket.number == 1
        assert "Done, it is cold now." in body(only(desk, "notify_reply", "bob@example.com"))

    def test_watchers_from_the_first_mail_get_the_answer_too(self, desk):
        agent_reply(desk, open_ticket(desk, cc="Dan <dan@customer.example>"), "Please unplug it.")
        row, _ = outbox(desk, "agent_reply")[0]
        assert row.rcpt_tos == ["alice@customer.example", "dan@customer.example"]

    def test_commands_in_the_quoted_text_are_never_read(self, desk):
        notification = open_ticket(desk)
        quoted = "> #close\n> #assign carol"
        raw = make_mail(
            subject="Re: x",
            sender="bob@example.com",
            to=notification["Reply-To"],
            body=f"Thanks.\n\nOn Mon, Jan 5, 2026, Bob <bob@example.com> wrote:\n{quoted}\n",
        )
        desk.deliver(raw, rcpt_tos=(notification["Reply-To"],))
        t = ticket(desk)
        assert (t.status, t.assignee) == ("open", None)
        assert not outbox(desk, "transcript")

    def test_an_agents_out_of_office_is_kept_but_neither_relayed_nor_obeyed(self, desk):
        agent_reply(
            desk, open_ticket(desk), "#close\nI am out of the office.", headers={"Auto-Submitted": "auto-replied"}
        )
        assert not outbox(desk, "agent_reply") and not outbox(desk, "transcript")
        assert ticket(desk).status == "new"
        assert events(desk, "agent.automatic_mail")


class TestCommands:
    def test_several_commands_and_a_transcript_of_what_each_did(self, desk):
        agent_reply(
            desk,
            open_ticket(desk),
            "#assign carol\n#priority high\n#queue billing\n#tag vip printer\n"
            "#time 30m\n#cc dan@customer.example\n\nWe are on it.",
        )
        t = ticket(desk)
        assert (t.assignee, t.priority, t.queue, t.tags, t.time_spent) == (
            "carol@example.com",
            "high",
            "billing",
            ["vip", "printer"],
            1800,
        )
        with desk.session() as s:
            assert s.scalars(select(Watcher.address)).all() == ["dan@customer.example"]
        transcript = only(desk, "transcript", "bob@example.com")
        text = body(transcript)
        assert "> #assign carol\nok: assigned to Carol <carol@example.com>" in text
        assert "> #time 30m\nok: +30m, 30m in total" in text
        assert "Your answer was sent to: alice@customer.example, dan@customer.example." in text
        assert transcript["Reply-To"] == only(desk, "notify_new_ticket", "bob@example.com")["Reply-To"]
        assert transcript["In-Reply-To"]

    def test_a_note_is_stored_for_agents_and_never_reaches_the_customer(self, desk):
        agent_reply(desk, open_ticket(desk), "#note\nThe customer is on the old firmware; do not promise a fix.")
        assert not outbox(desk, "agent_reply")
        assert not [r for r, _ in outbox(desk) if "alice@customer.example" in r.rcpt_tos and r.kind != "acknowledgment"]
        with desk.session() as s:
            note = s.scalar(select(Message).where(Message.direction == "note"))
            assert note.new_text == "The customer is on the old firmware; do not promise a fix."
        assert "kept as an internal note" in body(only(desk, "transcript"))
        assert ticket(desk).first_response_at is None

    def test_a_failed_command_changes_nothing_and_the_customer_gets_nothing(self, desk):
        agent_reply(desk, open_ticket(desk), "#take\n#assign zed\n#close\nAll done, closing.")
        t = ticket(desk)
        assert (t.status, t.assignee, t.first_response_at) == ("new", None, None)
        assert not outbox(desk, "agent_reply") and not outbox(desk, "resolved")
        text = body(only(desk, "transcript", "bob@example.com"))
        assert "> #assign zed\nFAILED: unknown agent 'zed'" in text
        assert "nothing was changed and nothing of your mail was" in text
        assert events(desk, "commands.failed")

    def test_close_resolves_and_sends_the_resolved_notice_asking_for_a_rating(self, desk):
        agent_reply(desk, open_ticket(desk), "#close\nThe new driver fixes it.")
        kinds = [r.kind for r, _ in outbox(desk) if r.rcpt_tos == ["alice@customer.example"]]
        assert kinds == ["acknowledgment", "agent_reply", "resolved"]
        notice = body(only(desk, "resolved"))
        assert "good" in notice and "bad" in notice
        t = ticket(desk)
        assert t.status == "resolved" and t.resolved_at is not None and t.first_response_at is not None

    def test_pending_then_the_customer_reply_reopens(self, desk):
        agent_reply(desk, open_ticket(desk), "#pending\nWhich model is it?")
        assert ticket(desk).status == "pending"
        customer_reply(desk, "An LX-200.\n", kind="agent_reply")
        assert ticket(desk).status == "open"

    def test_a_canned_answer_is_sent_below_the_agents_words(self, desk):
        agent_reply(desk, open_ticket(desk), "#template more_details\nHi Alice, one question first.")
        text = body(only(desk, "agent_reply"))
        assert text.index("one question first") < text.index("we need a few more details")

    def test_an_unknown_canned_answer_fails(self, desk):
        agent_reply(desk, open_ticket(desk), "#template nope\nHello")
        assert "no canned answer 'nope'" in body(only(desk, "transcript"))
        assert not outbox(desk, "agent_reply")

    def test_merge_moves_the_conversation_to_the_other_ticket(self, desk):
        open_ticket(desk)
        desk.deliver(
            make_mail(
                subject="Printer still on fire", sender="Dan <dan@customer.example>", msgid="<d1@customer.example>"
            )
        )
        second = outbox(desk, "notify_new_ticket", "bob@example.com")[1][1]
        agent_reply(desk, second, "#merge 1")
        t2 = ticket(desk, 2)
        assert t2.status == "closed" and t2.merged_into_id == ticket(desk, 1).id
        desk.deliver(
            make_mail(subject="Re: [#2] Printer still on fire", sender="dan@customer.example", body="Any news?\n")
        )
        with desk.session() as s:
            last = s.scalar(select(Message).order_by(Message.id.desc()))
            assert last.ticket.number == 1
            assert (
                "dan@customer.example"
                in s.scalars(select(Watcher.address).where(Watcher.ticket_id == last.ticket_id)).all()
            )

    def test_spam_moves_the_ticket_away_and_answers_nobody(self, desk):
        agent_reply(desk, open_ticket(desk), "#spam\nbuy cheap printers")
        t = ticket(desk)
        assert t.spam and t.queue == "spam"
        assert not outbox(desk, "agent_reply")

    def test_spam_block_lists_the_sender_and_notspam_brings_the_ticket_back(self, desk):
        from mailgate.storage.models import SenderList

        notification = open_ticket(desk)
        agent_reply(desk, notification, "#spam block")
        with desk.session() as s:
            assert [(e.entry, e.verdict) for e in s.scalars(select(SenderList))] == [
                ("alice@customer.example", "block")
            ]
        agent_reply(desk, notification, "#notspam allow")
        t = ticket(desk)
        assert (t.spam, t.queue) == (False, "support")
        with desk.session() as s:
            assert s.scalar(select(SenderList)).verdict == "allow"

    def test_help_mails_the_manual_back(self, desk):
        agent_reply(desk, open_ticket(desk), "#help")
        manual = body(only(desk, "transcript"))
        assert "# Working tickets by mail" in manual and "| `#fwd` |" in manual
        assert "trusted_authserv_ids" not in manual  # the admins' part stays home

    def test_fwd_opens_a_ticket_on_behalf_of_the_original_sender(self, make_config, harness_factory):
        h = harness_factory(
            make_config(agents=AGENTS, queues=QUEUES, agent_auth={"trusted_authserv_ids": ["mx.example.com"]})
        )
        raw = make_mail(
            subject="Fwd: Invoice wrong",
            sender="Bob <bob@example.com>",
            to="support@example.com",
            body="#fwd\n#priority high\nThis came to me directly.\n\n"
            "---------- Forwarded message ---------\nFrom: Eve Example <eve@customer.example>\n"
            "Date: Mon, 5 Jan 2026 at 08:00\nSubject: Invoice wrong\nTo: <bob@example.com>\n\n"
            "My invoice is wrong.\n",
            headers={"Authentication-Results": "mx.example.com; dkim=pass header.d=example.com"},
        )
        h.deliver(raw, mail_from="bob@example.com")
        t = ticket(h)
        assert (t.customer.address, t.subject, t.priority) == ("eve@customer.example", "Invoice wrong", "high")
        with h.session() as s:
            message = s.scalar(select(Message))
            assert (message.direction, message.author, message.new_text) == (
                "in",
                "bob@example.com",
                "My invoice is wrong.",
            )
        assert only(h, "acknowledgment").get("To") == "Eve Example <eve@customer.example>"
        assert "on behalf of eve@customer.example" in body(only(h, "transcript", "bob@example.com"))

    def test_an_agent_writing_a_new_mail_opens_a_ticket_like_anyone(self, make_config, harness_factory):
        h = harness_factory(
            make_config(agents=AGENTS, queues=QUEUES, agent_auth={"trusted_authserv_ids": ["mx.example.com"]})
        )
        h.deliver(
            make_mail(
                subject="VPN down",
                sender="Bob <bob@example.com>",
                body="#priority high\nVPN is down.",
                headers={"Authentication-Results": "mx.example.com; dkim=pass header.d=example.com"},
            ),
            mail_from="bob@example.com",
        )
        t = ticket(h)
        assert (t.customer.address, t.priority) == ("bob@example.com", "high")
        assert only(h, "acknowledgment", "bob@example.com") and only(h, "notify_new_ticket", "carol@example.com")
        assert not outbox(h, "agent_reply")


class TestProof:
    FORGED = "#close\n#assign carol\nClosing."

    def test_a_forged_agent_mail_naming_the_ticket_runs_no_command(self, desk):
        open_ticket(desk)
        desk.deliver(
            make_mail(subject="Re: [#1] Printer on fire", sender="Bob <bob@example.com>", body=self.FORGED),
            mail_from="bob@example.com",
        )
        t = ticket(desk)
        assert (t.status, t.assignee) == ("new", None)
        assert not outbox(desk, "agent_reply") and not outbox(desk, "transcript")
        assert "no signed reply address" in events(desk, "agent.unproven")[0]["reason"]
        assert ticket(desk, 2).customer.address == "bob@example.com"  # a stranger to ticket 1: a new ticket

    def test_a_forged_agent_reply_with_a_known_message_id_is_stored_as_a_customer_mail(self, desk):
        notification = open_ticket(desk)
        desk.deliver(
            make_mail(
                subject="Re: x", sender="bob@example.com", in_reply_to=notification["Message-ID"], body=self.FORGED
            )
        )
        t = ticket(desk)
        assert (t.status, t.assignee) == ("new", None)
        with desk.session() as s:
            assert [m.direction for m in s.scalars(select(Message).order_by(Message.id))] == ["in", "in"]
        assert events(desk, "agent.unproven")[0]["commands_ignored"] == 2

    def test_the_same_mail_to_the_agents_signed_address_runs_the_commands(self, desk):
        agent_reply(desk, open_ticket(desk), self.FORGED)
        t = ticket(desk)
        assert (t.status, t.assignee) == ("resolved", "carol@example.com")

    def test_another_agents_signed_address_does_not_prove_this_agent(self, desk):
        open_ticket(desk)
        carols = only(desk, "notify_new_ticket", "carol@example.com")
        agent_reply(desk, carols, self.FORGED, sender="Bob <bob@example.com>")
        assert ticket(desk).status == "new"
        assert events(desk, "agent.unproven")

    def test_a_wrong_mac_proves_nothing(self, desk):
        notification = open_ticket(desk)
        wrong = "support+1.aaaaaaaaaa@example.com"
        agent_reply(desk, notification, self.FORGED, to=wrong)
        assert ticket(desk).status == "new"

    @pytest.mark.parametrize(
        ("header", "obeyed"),
        [
            ("mx.example.com; dkim=pass header.d=example.com", True),
            ("mx.example.com; spf=pass smtp.mailfrom=bob@example.com", True),
            ("mx.example.com; dkim=fail header.d=example.com", False),
            ("mx.example.com; dkim=pass header.d=attacker.example", False),
            ("other.example; dkim=pass header.d=example.com", False),
        ],
    )
    def test_a_trusted_authentication_results_header_proves_the_agent(
        self, make_config, harness_factory, header, obeyed
    ):
        h = harness_factory(
            make_config(agents=AGENTS, queues=QUEUES, agent_auth={"trusted_authserv_ids": ["mx.example.com"]})
        )
        open_ticket(h)
        h.deliver(
            make_mail(
                subject="Re: [#1] Printer on fire",
                sender="Bob <bob@example.com>",
                body=self.FORGED,
                headers={"Authentication-Results": header},
            ),
            mail_from="bob@example.com",
        )
        assert (ticket(h).status == "resolved") is obeyed


class TestCustomers:
    def test_a_customer_closes_their_own_ticket(self, desk):
        open_ticket(desk)
        customer_reply(desk, "close\n\nThanks, it works again.\n")
        assert ticket(desk).status == "resolved"
        assert outbox(desk, "resolved")

    def test_a_close_that_does_not_prove_the_customer_is_stored_flagged_and_changes_nothing(self, desk):
        open_ticket(desk)
        desk.deliver(make_mail(subject="Re: [#1] Printer on fire", body="close\n"), mail_from="mallory@evil.test")
        assert ticket(desk).status == "new"
        assert not outbox(desk, "resolved")
        with desk.session() as s:
            last = s.scalar(select(Message).order_by(Message.id.desc()))
            assert (last.ticket.number, last.from_addr, last.parse_defects) == (
                1,
                "alice@customer.example",
                ["unproven sender"],
            )
        assert [e["changed"] for e in events(desk, "mail.unproven")] == ["nothing"]
        assert outbox(desk, "notify_reply", "bob@example.com")

    def test_a_trusted_authentication_results_pass_proves_the_customer(self, make_config, harness_factory):
        h = harness_factory(
            make_config(agents=AGENTS, queues=QUEUES, agent_auth={"trusted_authserv_ids": ["mx.example.com"]})
        )
        open_ticket(h)
        passed = {"Authentication-Results": "mx.example.com; dkim=pass header.d=customer.example"}
        h.deliver(make_mail(subject="Re: [#1] Printer on fire", body="close\n", headers=passed))
        assert ticket(h).status == "resolved"

    def test_an_untrusted_or_unaligned_pass_proves_nothing(self, make_config, harness_factory):
        h = harness_factory(
            make_config(agents=AGENTS, queues=QUEUES, agent_auth={"trusted_authserv_ids": ["mx.example.com"]})
        )
        open_ticket(h)
        untrusted = "evil.test; dkim=pass header.d=customer.example"
        for header in (untrusted, "mx.example.com; dkim=pass header.d=x.test"):
            h.deliver(
                make_mail(
                    subject="Re: [#1] Printer on fire", body="close\n", headers={"Authentication-Results": header}
                )
            )
        assert ticket(h).status == "new"
        assert len(events(h, "mail.unproven")) == 2

    def test_a_forged_rating_and_a_forged_reopen_change_nothing(self, desk):
        agent_reply(desk, open_ticket(desk), "#close\nFixed.")
        for text in ("bad\n", "It is on fire again.\n"):
            desk.deliver(make_mail(subject="Re: [#1] Printer on fire", body=text), mail_from="mallory@evil.test")
        t = ticket(desk)
        assert (t.status, t.csat) == ("resolved", None)
        assert not events(desk, "ticket.reopened")

    def test_close_words_are_configured(self, make_config, harness_factory):
        h = harness_factory(make_config(agents=AGENTS, lifecycle={"customer_close_words": ["erledigt"]}))
        h.deliver(make_mail(subject="Drucker"))
        customer_reply(h, "Erledigt.\n")
        assert ticket(h).status == "resolved"

    def test_someone_else_cannot_close_the_customers_ticket(self, desk):
        open_ticket(desk, cc="dan@customer.example")
        desk.deliver(make_mail(subject="Re: [#1] Printer on fire", sender="dan@customer.example", body="close\n"))
        assert ticket(desk).status == "new"

    def test_a_rating_is_recorded_and_reopens_nothing(self, desk):
        agent_reply(desk, open_ticket(desk), "#close\nFixed.")
        notice = only(desk, "resolved")
        desk.deliver(
            make_mail(subject="Re: " + notice["Subject"], to=notice["Reply-To"], body="5\n"),
            rcpt_tos=(notice["Reply-To"],),
        )
        t = ticket(desk)
        assert (t.status, t.csat) == ("resolved", "5")
        assert events(desk, "ticket.rated") == [{"rating": "5", "comment": ""}]

    def test_a_reply_to_a_resolved_ticket_within_reopen_days_reopens_it(self, desk, clock):
        agent_reply(desk, open_ticket(desk), "#close\nFixed.")
        clock.advance(timedelta(days=6))
        customer_reply(desk, "It is on fire again.\n", kind="resolved")
        t = ticket(desk)
        assert (t.status, t.resolved_at) == ("open", None)
        assert events(desk, "ticket.reopened")

    def test_a_follow_up_after_reopen_days_opens_a_new_ticket_that_references_the_old(self, desk, clock):
        agent_reply(desk, open_ticket(desk), "#close\nFixed.")
        clock.advance(timedelta(days=8))
        desk.deliver(make_mail(subject="Re: [#1] Printer on fire", body="It is on fire again.\n"))
        old, new = ticket(desk, 1), ticket(desk, 2)
        assert old.status == "resolved"
        assert (new.status, new.follows_id, new.customer.address) == ("new", old.id, "alice@customer.example")
        assert events(desk, "ticket.follows") == [{"follows": 1, "status": "resolved"}]
        assert events(desk, "ticket.followed_up") == [{"by": 2}]

    def test_a_follow_up_to_a_closed_ticket_opens_a_new_ticket(self, desk):
        open_ticket(desk)
        with desk.session() as s, s.begin():
            s.scalar(select(Ticket)).status = "closed"
        desk.deliver(make_mail(subject="Re: [#1] Printer on fire", body="Again!\n"))
        assert ticket(desk, 2).follows_id == ticket(desk, 1).id


class TestStrangers:
    def test_a_stranger_naming_a_ticket_gets_a_new_ticket_by_default(self, desk):
        open_ticket(desk)
        desk.deliver(make_mail(subject="Re: [#1] Printer on fire", sender="mallory@evil.example", body="hi\n"))
        assert ticket(desk, 2).customer.address == "mallory@evil.example"
        assert events(desk, "mail.stranger")[0]["named_ticket"] == 1
        with desk.session() as s:
            assert len(s.scalar(select(Ticket).where(Ticket.number == 1)).messages) == 1

    def test_a_stranger_can_be_held_instead(self, make_config, harness_factory):
        h = harness_factory(make_config(agents=AGENTS, queues=QUEUES, lifecycle={"stranger_policy": "hold"}))
        open_ticket(h)
        h.deliver(make_mail(subject="Re: [#1] Printer on fire", sender="mallory@evil.example", body="hi\n"))
        held = ticket(h, 2)
        assert held.queue == "held"
        assert not outbox(h, "acknowledgment", "mallory@evil.example")

    def test_anyone_writing_to_the_customers_signed_address_may_write(self, desk):
        agent_reply(desk, open_ticket(desk), "Please unplug it.")
        answer = only(desk, "agent_reply")
        desk.deliver(
            make_mail(
                subject="Re: [#1] Printer on fire",
                sender="alice.private@home.example",
                to=answer["Reply-To"],
                body="Writing from home: done.\n",
            ),
            rcpt_tos=(answer["Reply-To"],),
        )
        with desk.session() as s:
            assert s.scalar(select(Message).order_by(Message.id.desc())).ticket.number == 1


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"lifecycle": {"stranger_policy": "drop"}}, "lifecycle.stranger_policy"),
        ({"lifecycle": {"reopen_days": -1}}, "lifecycle.reopen_days"),
        ({"agent_auth": {"trusted_authserv_id": ["mx"]}}, "agent_auth.trusted_authserv_id"),
    ],
)
def test_a_bad_lifecycle_or_agent_auth_section_stops_the_start(make_config, harness_factory, section, key):
    from mailgate.errors import ConfigError

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        harness_factory(make_config(**section))
