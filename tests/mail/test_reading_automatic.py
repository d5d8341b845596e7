"""Automatic mail in its place: classified, held when it threads to no ticket, a feedback report suppresses
the complainant like a hard bounce, and a person writing from postmaster@ is no bounce."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from mailgate.storage.models import Suppression, Ticket
from tests.helpers import mailgate, make_mail
from tests.outbound.test_bounces import acknowledged, ticket_shape
from tests.outbound_helpers import events
from tests.reading import fixture, read

AUTO_REPLIES = ("autoreply_rfc3834.eml", "x_autoreply.eml", "exchange_oof.eml")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("autoreply_rfc3834.eml", "auto-reply"),
        ("x_autoreply.eml", "auto-reply"),
        ("exchange_oof.eml", "auto-reply"),
        ("feedback_report.eml", "feedback"),
        ("postmaster_human.eml", "human"),
        ("html_only.eml", "human"),
    ],
)
def test_each_mail_is_classified_as_human_or_its_kind_of_automatic_mail(name, kind):
    assert read(name).kind == kind


def test_precedence_auto_reply_is_an_auto_reply_and_auto_generated_mail_is_classified_apart():
    assert read("html_only.eml").kind == "human"
    auto = make_mail(headers={"Precedence": "auto_reply"})
    generated = make_mail(headers={"Auto-Submitted": "auto-generated"})
    from mailgate.mail.parse import parse

    assert parse(auto).kind == "auto-reply"
    assert parse(generated).kind == "auto-generated"


@pytest.mark.parametrize("name", AUTO_REPLIES)
def test_an_auto_reply_that_threads_to_no_ticket_opens_none_and_is_held_with_an_event(harness, name):
    harness.deliver(fixture(name))
    assert ticket_shape(harness) == {}
    [held] = events(harness, "mail.automatic_held")
    assert held.detail["mail_kind"] == "auto-reply" and held.detail["reason"]
    assert harness.runtime.services.blobs.get(held.detail["raw_sha256"]) == fixture(name)


def test_an_admin_lists_the_held_mail(harness, config_file):
    harness.deliver(fixture("autoreply_rfc3834.eml"))
    result = mailgate(config_file, "mail", "held", "--format", "json")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert (row["from"], row["mail_kind"], row["subject"]) == ("away@example.com", "auto-reply", "Out of office")


def test_with_unthreaded_automatic_ticket_an_auto_reply_opens_a_ticket(harness_factory, make_config):
    harness = harness_factory(make_config(reading={"unthreaded_automatic": "ticket"}))
    harness.deliver(fixture("x_autoreply.eml"))
    assert ticket_shape(harness) == {1: ["in"]}
    assert events(harness, "mail.automatic_held") == []


def test_an_auto_reply_to_a_ticket_still_joins_it(harness):
    acknowledged(harness)
    harness.deliver(make_mail(subject="Out of office: [#1] Printer on fire", headers={"X-Autoreply": "yes"}))
    assert ticket_shape(harness) == {1: ["in", "in"]}


def test_a_feedback_report_that_threads_to_nothing_opens_no_ticket(harness):
    harness.deliver(fixture("feedback_report.eml"), mail_from="")
    assert ticket_shape(harness) == {}


def test_a_proven_feedback_report_suppresses_automatic_mail_to_the_complainant(harness):
    row = acknowledged(harness)
    report = (
        f"From: fbl@isp.example\r\nTo: {row.mail_from}\r\nSubject: complaint\r\nMessage-ID: <fbl-1@isp.example>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary="R"\r\n\r\n'
        "--R\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        "--R\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n"
        "Original-Rcpt-To: alice@customer.example\r\n\r\n"
        f"--R\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {row.message_id}\r\n\r\n--R--\r\n"
    ).encode()
    harness.deliver(report, mail_from="", rcpt_tos=(row.mail_from,))
    assert ticket_shape(harness) == {1: ["in", "in"]}
    [complaint] = events(harness, "mail.complaint")
    assert complaint.detail["recipient"] == "alice@customer.example"
    with harness.session() as s:
        assert [x.address for x in s.scalars(select(Suppression))] == ["alice@customer.example"]


def test_an_unproven_feedback_report_suppresses_nobody(harness):
    acknowledged(harness)
    harness.deliver(fixture("feedback_report.eml"), mail_from="")
    with harness.session() as s:
        assert s.scalars(select(Suppression)).all() == []


def test_a_person_writing_from_postmaster_without_a_report_part_opens_a_ticket(harness):
    harness.deliver(fixture("postmaster_human.eml"), mail_from="postmaster@customer.example")
    with harness.session() as s:
        [ticket] = s.scalars(select(Ticket)).all()
        assert ticket.subject == "Question about your service"
    assert events(harness, "bounce.unmatched") == []
