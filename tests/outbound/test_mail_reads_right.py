"""Small things a reader of our mail sees: strict templates, one set of agents per queue, a clean cut."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from mailgate.config import load_config
from mailgate.domain import answer, html_cut, quotes
from mailgate.outbound import notices
from mailgate.outbound import plugin as outbound
from mailgate.outbound.templating import Templates


def test_a_rules_replacement_acknowledgment_with_a_misspelt_name_fails_the_check(tmp_path: Path):
    outbound.import_kind_registrations()
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "acknowledgment_vip.j2").write_text("{% block text %}Dear {{ custmer.name }}{% endblock %}\n")
    problems = [p for p in Templates([tmp_path]).check() if "acknowledgment_vip" in p.file]
    assert problems and "unknown variable 'custmer'" in problems[0].message


def test_new_tickets_and_sla_warnings_go_to_the_same_agents_of_a_queue(make_config):
    config = load_config(
        make_config(
            agents=[{"address": "bob@example.com", "queues": ["support"]}, {"address": "carol@example.com"}],
            queues=[{"name": "support", "agents": ["carol@example.com"]}],
        )
    )
    services = SimpleNamespace(config=config)
    assert outbound.queue_agents(config, "support") == ["carol@example.com", "bob@example.com"]
    assert notices.queue_agents(services, "support") == outbound.queue_agents(config, "support")


def test_the_html_cut_keeps_the_answer_above_each_clients_quote_marker():
    cases = {
        "gmail": '<div dir="ltr">New text</div><div class="gmail_quote">On Mon wrote:<blockquote>old</div>',
        "outlook web": '<div>New text</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg">From: x</div>old',
        "outlook desktop": '<p>New text</p><div style="border:none;border-top:solid #E1E1E1 1.0pt">From: x</div>old',
        "thunderbird": '<p>New text</p><div class="moz-cite-prefix">On 5/1 x wrote:</div><blockquote type="cite">old',
        "apple mail": '<div>New text</div><div><br><blockquote type="cite"><div>On 5 Jan x wrote:</div>old',
        "yahoo": '<div>New text</div><div class="yahoo_quoted">On Monday x wrote: old</div>',
    }
    for client, html in cases.items():
        cut = html_cut.cut(html, quotes.is_intro)
        assert "New text" in cut and "old" not in cut and "wrote" not in cut, client


def test_an_intro_line_right_above_an_apple_quote_goes_with_it():
    html = (
        "<div>Answer</div><div><br></div><div>On 5 Jan 2026, at 09:00, Support &lt;s@example.com&gt; wrote:</div>"
        '<br><blockquote type="cite">old</blockquote>'
    )
    assert html_cut.cut(html, quotes.is_intro) == "<div>Answer</div><div><br></div>"


def test_commands_at_the_top_of_an_html_answer_are_removed_with_their_line_breaks():
    html = "<p>#take<br>#priority high<br><br>Hello <b>Alice</b></p>"
    assert html_cut.drop_commands(html, ["#take", "#priority high"]) == "<p>Hello <b>Alice</b></p>"


def test_an_html_answer_with_no_text_of_its_own_falls_back_to_the_text_rules():
    found = answer.from_html('<div class="gmail_quote">only history</div>', [])
    assert found.text == "" and found.html == ""
    text_only = answer.of_agent_mail(
        b"Subject: x\r\n\r\nPlain answer", False, "Plain answer\n\nsee https://x.example/a", []
    )
    assert text_only.html == '<p>Plain answer</p>\n<p>see <a href="https://x.example/a">https://x.example/a</a></p>'


def test_a_mail_to_an_address_outside_ascii_has_mime_version_once_at_the_top():
    from datetime import UTC, datetime

    from mailgate.mail import compose
    from tests import mail_structure

    mail = compose.Outgoing(
        from_addr="support@example.com",
        to=[("", "jörg@exämple.com")],
        subject="x",
        text="hi",
        html="<p>hi</p>",
        date=datetime.now(UTC),
        message_id="<a@b.example>",
        attachments=[compose.OutAttachment("a.txt", "text/plain", b"a\n")],
    )
    assert mail_structure.problems(compose.compose(mail)) == []


def test_compose_names_the_reply_to_when_given_a_display_name():
    from datetime import UTC, datetime

    from mailgate.mail import compose

    mail = compose.Outgoing(
        from_addr="support@example.com",
        to=[("", "alice@customer.example")],
        subject="x",
        text="hi",
        date=datetime.now(UTC),
        message_id="<a@b.example>",
        reply_to="support+1.abc@example.com",
        reply_to_name="Example Support",
    )
    raw = compose.compose(mail)
    assert b"Reply-To: Example Support <support+1.abc@example.com>\r\n" in raw
