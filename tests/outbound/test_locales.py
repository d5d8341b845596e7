"""The customer's language: rule, Content-Language, the language of the text, then the queue's.

And every kind of mail exists, as a real translation, in every shipped locale.
"""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from mailgate.mail import language as locale_detect
from mailgate.outbound import plugin as outbound
from mailgate.outbound.templating import SHIPPED_DIR, Templates, sample_context
from tests.helpers import make_mail
from tests.pipeline.test_conversation_e2e import Inbox

SHIPPED_LOCALES = ("en", "fr", "ru", "de", "es")
SHIPPED = Templates([SHIPPED_DIR])
ENGLISH_KINDS = sorted(p.stem for p in (SHIPPED_DIR / "en").glob("*.j2"))
FRENCH = "Bonjour,\nmon imprimante ne fonctionne plus depuis hier soir et elle fait un bruit étrange.\nMerci\n"
GERMAN = "Guten Tag,\nmein Drucker funktioniert seit gestern Abend nicht mehr und macht ein seltsames Geräusch.\n"
RUSSIAN = "Здравствуйте,\nмой принтер со вчерашнего вечера не работает и издаёт странный звук.\nСпасибо\n"


def test_every_locale_folder_shipped_has_every_kind_of_mail():
    outbound.import_kind_registrations()
    shipped = {p.name for p in SHIPPED_DIR.iterdir() if p.is_dir() and p.name != "canned"}
    assert shipped == set(SHIPPED_LOCALES)
    for locale in SHIPPED_LOCALES:
        assert sorted(p.stem for p in (SHIPPED_DIR / locale).glob("*.j2")) == ENGLISH_KINDS, locale


@pytest.mark.parametrize("locale", SHIPPED_LOCALES[1:])
@pytest.mark.parametrize("kind", ENGLISH_KINDS)
def test_each_kind_renders_from_its_own_translation_not_the_english_text(kind, locale):
    outbound.import_kind_registrations()
    english = SHIPPED.render(kind, "en", sample_context(kind))
    rendered = SHIPPED.render(kind, locale, sample_context(kind))
    assert rendered.template == f"{locale}/{kind}.j2"
    english_lines = {line for line in english.text.splitlines() if len(line) > 25 and "{" not in line}
    own_lines = {line for line in rendered.text.splitlines() if len(line) > 25}
    assert own_lines - english_lines, "every long line is the English one"
    assert locale_detect.detect(rendered.text) in (locale, ""), rendered.text


def test_detection_names_the_language_of_a_real_sentence_and_nothing_for_a_scrap():
    assert locale_detect.detect(FRENCH) == "fr"
    assert locale_detect.detect(GERMAN) == "de"
    assert locale_detect.detect(RUSSIAN) == "ru"
    assert locale_detect.detect("Ok.") == ""


def test_the_order_is_rule_then_content_language_then_text_then_queue():
    known = frozenset(SHIPPED_LOCALES)
    assert locale_detect.choose(rule="es", content_language="fr", text=GERMAN, fallback="en", known=known) == "es"
    assert locale_detect.choose(rule="", content_language="fr-CA, en", text=GERMAN, fallback="en", known=known) == "fr"
    assert locale_detect.choose(rule="", content_language="", text=GERMAN, fallback="en", known=known) == "de"
    assert locale_detect.choose(rule="", content_language="", text="Ok.", fallback="ru", known=known) == "ru"
    italian = "Buongiorno, la mia stampante non funziona più da ieri sera e fa un rumore strano."
    assert locale_detect.choose(rule="", content_language="it", text=italian, fallback="ru", known=known) == "ru"


def acknowledgment(inbox: Inbox, subject: str) -> email.message.EmailMessage:
    def match() -> email.message.EmailMessage | None:
        found = [m for m in inbox.mails() if m["Subject"] == subject]
        return found[0] if found else None

    from tests.helpers import wait_for

    return wait_for(match, timeout=180, message=f"the acknowledgment {subject}")


def test_french_german_and_russian_first_mails_get_acknowledgments_in_their_language_and_a_rule_wins(
    tmp_path: Path, make_config, daemon_factory
):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-spanish.toml").write_text(
        '[[rule]]\nname = "spanish-partner"\nlocale = "es"\nmatch = { from_domain = ["partner.example"] }\n'
    )
    config = make_config(rules={"dir": str(rules)})
    daemon = daemon_factory(config)
    mails = [
        ("alice@customer.example", "Imprimante", FRENCH),
        ("bernd@customer.example", "Drucker", GERMAN),
        ("olga@customer.example", "Принтер", RUSSIAN),
        ("pat@partner.example", "Printer", FRENCH),
    ]
    for sender, subject, body in mails:
        daemon.send(make_mail(subject=subject, body=body, sender=sender), mail_from=sender)
    expected = {
        "Imprimante": "Votre demande porte le numéro de ticket",
        "Drucker": "Ihre Anfrage hat jetzt die Ticketnummer",
        "Принтер": "Вашему обращению присвоен номер",
        "Printer": "Su solicitud es ahora el ticket",
    }
    for number, (sender, subject, _body) in enumerate(mails, 1):
        ack = acknowledgment(Inbox(config, sender), f"[#{number}] {subject}")
        assert expected[subject] in ack.get_body(("plain",)).get_content(), subject


def test_content_language_wins_over_the_text(make_config, harness_factory):
    h = harness_factory(make_config())
    raw = make_mail(body=FRENCH).replace(b"Subject:", b"Content-Language: de-DE\r\nSubject:", 1)
    h.deliver(raw)
    from sqlalchemy import select

    from mailgate.storage.models import Outbox, Ticket

    with h.session() as session:
        assert session.scalar(select(Ticket.locale)) == "de"
        raw = session.scalar(select(Outbox.raw).where(Outbox.kind == "acknowledgment"))
    ack = email.message_from_bytes(raw, policy=policy.default)
    assert "Ihre Anfrage hat jetzt die Ticketnummer" in ack.get_body(("plain",)).get_content()
