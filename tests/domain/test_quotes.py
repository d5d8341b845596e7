"""Quote stripping: only the new part of a reply is shown and relayed.

The samples in tests/data/replies/ are reply bodies as mail clients send them
(NAME.txt) with the new text a person would pick out of them
(NAME.expected.txt, compared without its final newline).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from mailgate.domain.quotes import split_reply

REPLIES = Path(__file__).parents[1] / "data" / "replies"
EXPECTED_SUFFIX = ".expected.txt"
SAMPLES = sorted(p.name.removesuffix(EXPECTED_SUFFIX) for p in REPLIES.glob("*" + EXPECTED_SUFFIX))
LANGUAGES = {"en", "fr", "de", "ru", "uk", "pl", "pt", "es", "it", "sv", "nl"}

QUOTE = "> Hello,\n>\n> could you send us the log file?\n>\n> Support\n"


def read(path: Path) -> str:
    """The file as sent: bytes decoded, line endings untouched."""
    return path.read_bytes().decode("utf-8")


# --- the samples ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_reply_yields_exactly_the_expected_new_text(name: str) -> None:
    expected = read(REPLIES / f"{name}{EXPECTED_SUFFIX}").removesuffix("\n")
    assert split_reply(read(REPLIES / f"{name}.txt")).new_text == expected


def test_samples_are_many_and_cover_every_supported_language() -> None:
    assert len(SAMPLES) >= 35
    assert {name.split("_")[0] for name in SAMPLES} >= LANGUAGES


def test_every_sample_body_has_its_expected_text() -> None:
    bodies = {p.name.removesuffix(".txt") for p in REPLIES.glob("*.txt")}
    bodies = {b for b in bodies if not b.endswith(".expected")}
    assert bodies == set(SAMPLES)


def test_some_samples_use_crlf_line_endings() -> None:
    assert any("\r\n" in read(REPLIES / f"{name}.txt") for name in SAMPLES)


# --- ">" quoting --------------------------------------------------------------------------


def test_top_posted_answer_is_the_new_text_and_the_quote_goes_to_quoted() -> None:
    reply = split_reply("Here it is.\n\nOn Mon, Oct 24, 2016 at 3:36 PM Support wrote:\n" + QUOTE)
    assert reply.new_text == "Here it is."
    assert reply.quoted.startswith("On Mon, Oct 24, 2016 at 3:36 PM Support wrote:\n> Hello,")
    assert reply.signature == ""
    assert reply.forwarded == ""


def test_bottom_posted_answer_below_the_quote_is_the_new_text() -> None:
    text = "On 10/24/16 3:36 PM, Support wrote:\n" + QUOTE + "\nAttached.\n\nThanks,\nEva\n"
    reply = split_reply(text)
    assert reply.new_text == "Attached.\n\nThanks,\nEva"
    assert reply.quoted.startswith("On 10/24/16 3:36 PM, Support wrote:")


def test_interleaved_answers_keep_every_unquoted_line_in_order() -> None:
    text = "> Which version?\n\n4.2.1\n\n> Which operating system?\n\n\nWindows 11.\n> And the browser?\nFirefox 128.\n"
    reply = split_reply(text)
    assert reply.new_text == "4.2.1\n\nWindows 11.\nFirefox 128."
    assert reply.quoted == "> Which version?\n> Which operating system?\n> And the browser?"


def test_quoted_lines_may_be_indented() -> None:
    assert split_reply("Done.\n\n  > old text\n  > more old text\n").new_text == "Done."


def test_a_reply_that_is_only_a_quote_has_no_new_text() -> None:
    reply = split_reply(QUOTE)
    assert reply.new_text == ""
    assert reply.quoted == QUOTE.rstrip("\n")


# --- quote intros ----------------------------------------------------------------------------

INTROS = [
    "On Mon, Oct 24, 2016 at 3:36 PM John Smith <john@example.com> wrote:",
    "On 24 Oct 2016, at 15:36, John Smith <john@example.com> wrote:",
    "Am Mo., 24. Okt. 2016 um 15:36 Uhr schrieb Hans Müller <hans@example.de>:",
    "Am 24.10.2016 um 15:36 schrieb Hans Müller:",
    "Le lun. 24 oct. 2016 à 15:36, Jean Dupont <jean@example.fr> a écrit :",
    "Le 24/10/2016 à 15:36, Jean Dupont a écrit\u00a0:",
    "24.10.2016 15:36, Иван Петров пишет:",
    "24 окт. 2016 г., в 15:36, Иван Петров <ivan@example.ru> написал(а):",
    "пн, 24 окт. 2016 г. в 15:36, Иван Петров <ivan@example.ru>:",
    "пн, 24 жовт. 2016 о 15:36 Іван Петренко <ivan@example.ua> пише:",
    "pon., 24 paź 2016 o 15:36 Jan Kowalski <jan@example.pl> napisał(a):",
    "W dniu 24.10.2016 o 15:36, Jan Kowalski pisze:",
    "Em seg., 24 de out. de 2016 às 15:36, João Silva <joao@example.com.br> escreveu:",
    "El lun., 24 oct. 2016 a las 15:36, Juan García (<juan@example.es>) escribió:",
    "Il giorno lun 24 ott 2016 alle ore 15:36 Mario Rossi <mario@example.it> ha scritto:",
    "Op ma 24 okt. 2016 om 15:36 schreef Jan de Vries <jan@example.nl>:",
    "Op 24 okt. 2016 om 15:36 heeft Jan de Vries <jan@example.nl> het volgende geschreven:",
    "Den mån 24 okt. 2016 kl 15:36 skrev Sven Svensson <sven@example.se>:",
    "24 okt. 2016 kl. 15:36 skrev Sven Svensson <sven@example.se>:",
    "2016-10-24 15:36 GMT+02:00 John Smith <john@example.com>:",
    '24.10.2016, 15:36, "Иван Петров" <ivan@yandex.ru>:',
    "John Smith <john@example.com> wrote on 24/10/2016 15:36:",
]


@pytest.mark.parametrize("intro", INTROS)
def test_quote_intro_above_a_quote_is_removed(intro: str) -> None:
    reply = split_reply(f"New answer.\n\n{intro}\n\n{QUOTE}")
    assert reply.new_text == "New answer."
    assert reply.quoted.startswith(intro)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("On Mon, Oct 24, 2016 at 3:36 PM John Smith <john.smith@example.com>", "wrote:"),
        ("On Mon, Oct 24, 2016 at 3:36 PM John Smith <", "john.smith@example.com> wrote:"),
        ("Am Mo., 24. Okt. 2016 um 15:36 Uhr schrieb Hans Müller <", "hans@example.de>:"),
        ("Le lun. 24 oct. 2016 à 15:36, Jean Dupont <jean.dupont@example.fr> a", "écrit :"),
        ("pon., 24 paź 2016 o 15:36 Jan Kowalski <jan@example.pl>", "napisał(a):"),
        ("Em seg., 24 de out. de 2016 às 15:36, João Silva <joao@example.com.br>", "escreveu:"),
        ("2016-10-24 15:36 GMT+02:00 John Smith <", "john@example.com>:"),
        ("пн, 24 окт. 2016 г. в 15:36, Иван Петров <", "ivan@example.ru>:"),
    ],
)
def test_quote_intro_wrapped_over_two_lines_is_removed(first: str, second: str) -> None:
    reply = split_reply(f"New answer.\n\n{first}\n{second}\n\n{QUOTE}")
    assert reply.new_text == "New answer."


def test_a_text_line_just_above_an_intro_is_not_taken_for_its_first_half() -> None:
    text = "On second thought, keep it.\nOn Mon, Oct 24, 2016 at 3:36 PM John <j@x.org> wrote:\n"
    assert split_reply(text + QUOTE).new_text == "On second thought, keep it."


def test_intro_with_a_time_but_no_quote_marks_ends_the_new_text() -> None:
    text = "Fine by me.\n\nOn 24/10/2016 15:36, Support wrote:\n\n    Hello, is Friday fine?\n"
    reply = split_reply(text)
    assert reply.new_text == "Fine by me."
    assert reply.quoted == "On 24/10/2016 15:36, Support wrote:\n\n    Hello, is Friday fine?"


def test_prose_that_sounds_like_an_intro_stays_in_the_new_text() -> None:
    text = "As I wrote on 24 October:\n- the backup fails\n- the disk is full\n"
    assert split_reply(text).new_text == text.rstrip("\n")


def test_an_intro_without_date_or_address_is_prose_even_above_a_quote() -> None:
    reply = split_reply("As Anna wrote:\n> the disk is full\nSo I cleaned it up.\n")
    assert reply.new_text == "As Anna wrote:\nSo I cleaned it up."


# --- Outlook: "Original Message" and header blocks ----------------------------------------

ORIGINAL_MESSAGE_SEPARATORS = [
    "-----Original Message-----",
    "----- Original Message -----",
    "-------- Original message --------",
    "-----Mensaje original-----",
    "-----Ursprüngliche Nachricht-----",
    "-----Message d'origine-----",
    "-----Исходное сообщение-----",
    "-----Messaggio originale-----",
    "-----Mensagem original-----",
    "-----Oorspronkelijk bericht-----",
    "-----Originalmeddelande-----",
    "-----Wiadomość oryginalna-----",
    "-----Оригінальне повідомлення-----",
]


@pytest.mark.parametrize("separator", ORIGINAL_MESSAGE_SEPARATORS)
def test_everything_from_an_original_message_separator_down_is_history(separator: str) -> None:
    text = f"Thanks, done.\n\n{separator}\nFrom: Support\nSent: today\n\nOld text.\n"
    reply = split_reply(text)
    assert reply.new_text == "Thanks, done."
    assert reply.quoted == f"{separator}\nFrom: Support\nSent: today\n\nOld text."


HEADER_BLOCKS = {
    "en": "From: Support <support@example.com>\nSent: Monday, October 24, 2016 3:36 PM\n"
    "To: Ann <ann@example.com>\nSubject: RE: [SUP#1] Printer",
    "it": "Da: Assistenza <support@example.com>\nInviato: lunedì 24 ottobre 2016 15:36\n"
    "A: Giulia <g@example.it>\nOggetto: R: Stampante",
    "sv": "Från: Kundtjänst <support@example.com>\nSkickat: den 24 oktober 2016 15:36\n"
    "Till: Erik <erik@example.se>\nÄmne: SV: Skrivare",
    "de": "Von: Support <support@example.com>\nGesendet: Montag, 24. Oktober 2016 15:36\n"
    "An: Petra <p@example.de>\nBetreff: AW: Drucker",
    "fr": "De\u00a0: Support <support@example.com>\nEnvoyé\u00a0: lundi 24 octobre 2016 15:36\n"
    "À\u00a0: Sophie <s@example.fr>\nObjet\u00a0: RE: Imprimante",
    "ru": "От: Поддержка <support@example.com>\nОтправлено: 24 октября 2016 г. 15:36\n"
    "Кому: Сергей <s@example.ru>\nТема: RE: Принтер",
    "es": "De: Soporte <support@example.com>\nEnviado el: lunes, 24 de octubre de 2016 15:36\n"
    "Para: Carmen <c@example.es>\nAsunto: RE: Impresora",
    "pt": "De: Suporte <support@example.com>\nEnviada em: segunda-feira, 24 de outubro de 2016\n"
    "Para: Ana <a@example.pt>\nAssunto: RE: Impressora",
    "nl": "Van: Klantenservice <support@example.com>\nVerzonden: maandag 24 oktober 2016 15:36\n"
    "Aan: Sanne <s@example.nl>\nOnderwerp: RE: Printer",
    "pl": "Od: Pomoc <support@example.com>\nWysłano: poniedziałek, 24 października 2016 15:36\n"
    "Do: Marek <m@example.pl>\nTemat: RE: Drukarka",
    "uk": "Від: Підтримка <support@example.com>\nНадіслано: 24 жовтня 2016 р. 15:36\n"
    "Кому: Тарас <t@example.ua>\nТема: RE: Принтер",
}


@pytest.mark.parametrize("language", sorted(HEADER_BLOCKS))
def test_outlook_header_block_and_everything_below_is_history(language: str) -> None:
    block = HEADER_BLOCKS[language]
    reply = split_reply(f"New answer.\n\n{block}\n\nOld text.\n")
    assert reply.new_text == "New answer."
    assert reply.quoted == f"{block}\n\nOld text."


@pytest.mark.parametrize("rule", ["_" * 32, "-" * 20, "=" * 10])
def test_the_rule_above_a_header_block_is_history_too(rule: str) -> None:
    reply = split_reply(f"New answer.\n\n{rule}\n{HEADER_BLOCKS['en']}\n\nOld text.\n")
    assert reply.new_text == "New answer."
    assert reply.quoted.startswith(rule + "\nFrom: Support")


def test_header_fields_in_bold_from_an_html_conversion_are_recognised() -> None:
    block = "*From:* Support\n*Sent:* Monday\n*To:* Ann\n*Subject:* RE: Printer"
    assert split_reply(f"New answer.\n\n{block}\n\nOld.\n").new_text == "New answer."


def test_a_from_line_without_enough_header_fields_is_prose() -> None:
    text = "Our opening hours change next week.\nFrom: Monday 8:00\nTo: Friday 18:00\n"
    assert split_reply(text).new_text == text.rstrip("\n")


# --- forwards -----------------------------------------------------------------------------

FORWARD_MARKERS = [
    "---------- Forwarded message ---------",
    "-------- Forwarded Message --------",
    "Begin forwarded message:",
    "-------- Message transféré --------",
    "Début du message réexpédié :",
    "---------- Weitergeleitete Nachricht ----------",
    "Anfang der weitergeleiteten Nachricht:",
    "-------- Пересланное сообщение --------",
    "---------- Mensaje reenviado ---------",
    "Inicio del mensaje reenviado:",
    "---------- Messaggio inoltrato ---------",
    "Inizio messaggio inoltrato:",
    "---------- Mensagem encaminhada ---------",
    "---------- Doorgestuurd bericht ---------",
    "Begin doorgestuurd bericht:",
    "---------- Vidarebefordrat meddelande ---------",
    "---------- Wiadomość przekazana dalej ---------",
    "---------- Переслане повідомлення ---------",
]


@pytest.mark.parametrize("marker", FORWARD_MARKERS)
def test_a_forward_splits_comment_and_forwarded_message(marker: str) -> None:
    text = f"Please look at this.\n\n{marker}\nFrom: Shop <shop@example.com>\n\nOrder 42 shipped.\n"
    reply = split_reply(text)
    assert reply.new_text == "Please look at this."
    assert reply.forwarded == "From: Shop <shop@example.com>\n\nOrder 42 shipped."
    assert reply.quoted == ""


def test_a_forward_without_comment_keeps_the_forwarded_text_as_its_new_text() -> None:
    reply = split_reply("\n\nBegin forwarded message:\n\nFrom: Shop\n\nOrder 42 shipped.\n")
    assert reply.new_text == "Order 42 shipped."  # never an empty mail for the agent
    assert reply.forwarded == "From: Shop\n\nOrder 42 shipped."


def test_history_inside_a_forwarded_message_stays_in_the_forward() -> None:
    text = (
        "FYI\n\n---------- Forwarded message ---------\nFrom: Ann\n\nSee below.\n\n"
        f"{HEADER_BLOCKS['en']}\n\nOld text.\n"
    )
    reply = split_reply(text)
    assert reply.new_text == "FYI"
    assert reply.forwarded.endswith("Subject: RE: [SUP#1] Printer\n\nOld text.")
    assert reply.quoted == ""


def test_a_forward_marker_inside_quoted_history_is_not_a_forward() -> None:
    text = f"Thanks.\n\n{HEADER_BLOCKS['en']}\n\nBegin forwarded message:\n\nOld forward.\n"
    reply = split_reply(text)
    assert reply.new_text == "Thanks."
    assert reply.forwarded == ""
    assert reply.quoted.endswith("Begin forwarded message:\n\nOld forward.")


def test_a_forward_marker_quoted_with_gt_is_not_a_forward() -> None:
    text = "Got it.\n\n> ---------- Forwarded message ---------\n> From: Shop\n"
    reply = split_reply(text)
    assert reply.new_text == "Got it."
    assert reply.forwarded == ""


# --- signatures ---------------------------------------------------------------------------


def test_signature_after_the_dash_dash_space_delimiter() -> None:
    reply = split_reply("See you Friday.\n\n-- \nAnna Berg\nACME Ltd.\n")
    assert reply.new_text == "See you Friday."
    assert reply.signature == "Anna Berg\nACME Ltd."


def test_dash_dash_alone_also_opens_a_signature() -> None:
    reply = split_reply("See you Friday.\n--\nAnna\n")
    assert reply.new_text == "See you Friday."
    assert reply.signature == "Anna"


def test_signature_between_answer_and_quote_is_separated_from_both() -> None:
    text = f"Done.\n\n-- \nAnna\n\nOn Mon, Oct 24, 2016 at 3:36 PM Support wrote:\n{QUOTE}"
    reply = split_reply(text)
    assert (reply.new_text, reply.signature) == ("Done.", "Anna")
    assert reply.quoted.startswith("On Mon, Oct 24, 2016")


def test_signature_of_a_bottom_posted_reply() -> None:
    reply = split_reply(QUOTE + "\nDone.\n\n-- \nAnna\n")
    assert (reply.new_text, reply.signature) == ("Done.", "Anna")


def test_a_sign_off_without_delimiter_is_part_of_the_new_text() -> None:
    reply = split_reply("Done.\n\nThanks,\nAnna\n")
    assert reply.new_text == "Done.\n\nThanks,\nAnna"
    assert reply.signature == ""


def test_a_dash_dash_option_in_the_text_is_not_a_delimiter() -> None:
    text = "Run it with\n--verbose\nand send the output.\n"
    assert split_reply(text).new_text == text.rstrip("\n")


MOBILE_FOOTERS = [
    "Sent from my iPhone",
    "Sent from my iPad",
    "Sent from my Samsung Galaxy smartphone.",
    "Sent from my BlackBerry 10 smartphone.",
    "Sent from Mail for Windows",
    "Sent from Mail for Windows 10",
    "Sent from Yahoo Mail on Android",
    "Sent with Proton Mail secure email.",
    "Get Outlook for iOS<https://aka.ms/o0ukef>",
    "Get Outlook for Android",
    "Envoyé de mon iPhone",
    "Envoyé depuis mon appareil Galaxy",
    "Obtenir Outlook pour iOS",
    "Von meinem iPhone gesendet",
    "Gesendet von Mail für Windows",
    "Отправлено с iPhone",
    "Отправлено из мобильной Яндекс.Почты",
    "Надіслано з iPhone",
    "Wysłane z iPhone'a",
    "Wysłane z aplikacji Poczta dla Windows",
    "Enviado do meu iPhone",
    "Enviado desde mi iPhone",
    "Enviado desde Correo para Windows",
    "Inviato da iPhone",
    "Skickat från min iPhone",
    "Verzonden vanaf mijn iPhone",
    "Verstuurd vanaf mijn iPad",
]


@pytest.mark.parametrize("footer", MOBILE_FOOTERS)
def test_a_mobile_footer_opens_the_signature(footer: str) -> None:
    reply = split_reply(f"Yes, go ahead.\n\n{footer}\n\nOn 24.10.2016 15:36, Ann wrote:\n{QUOTE}")
    assert reply.new_text == "Yes, go ahead."
    assert reply.signature == footer


def test_prose_about_sending_is_not_a_footer() -> None:
    text = "The parcel was sent from our Berlin warehouse.\nSent from here, it takes 2 days.\n"
    assert split_reply(text).new_text == text.rstrip("\n")


# --- commands -----------------------------------------------------------------------------


def test_commands_at_the_top_are_kept_untouched() -> None:
    text = "#close\n#assign bob\n\nCustomer confirmed by phone.\n\nOn 24.10.2016 15:36, Ann wrote:"
    reply = split_reply(f"{text}\n{QUOTE}")
    assert reply.new_text == "#close\n#assign bob\n\nCustomer confirmed by phone."


def test_commands_of_a_bottom_posted_reply_are_at_the_top_of_the_new_text() -> None:
    text = f"On 24.10.2016 15:36, Ann wrote:\n{QUOTE}\n#assign  bob \n#note  spacing kept\n"
    assert split_reply(text).new_text == "#assign  bob \n#note  spacing kept"


def test_a_reply_with_only_a_command_keeps_the_command() -> None:
    reply = split_reply("#close\r\n\r\nSent from my iPhone\r\n\r\n> old\r\n")
    assert reply.new_text == "#close"
    assert reply.signature == "Sent from my iPhone"


# --- robustness ---------------------------------------------------------------------------


def test_reply_is_immutable() -> None:
    reply = split_reply("hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.new_text = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("text", ["", "\n", "\r\n\r\n", "   \t ", ">", "--", "-- ", "\ufeff"])
def test_empty_and_degenerate_input_gives_no_new_text(text: str) -> None:
    reply = split_reply(text)
    assert (reply.new_text, reply.signature, reply.forwarded) == ("", "", "")
    assert reply.quoted in ("", ">")


def test_crlf_cr_and_lf_input_give_the_same_result() -> None:
    text = f"Done.\n\n-- \nAnna\n\nOn 24.10.2016 15:36, Support wrote:\n{QUOTE}"
    lf = split_reply(text)
    assert split_reply(text.replace("\n", "\r\n")) == lf
    assert split_reply(text.replace("\n", "\r")) == lf
    assert "\r" not in lf.new_text + lf.quoted + lf.signature


def test_binary_looking_input_is_accepted() -> None:
    junk = bytes(range(256)).decode("latin-1") * 20
    undecodable = b"\xff\xfe\x00broken \xc3(\n> x\n".decode("utf-8", "surrogateescape")
    for text in (junk, undecodable, "\x00" * 1000, "\udcff\n\ud800"):
        assert isinstance(split_reply(text).new_text, str)


def test_random_input_never_raises_and_every_output_line_comes_from_the_input() -> None:
    tokens = [
        "On",
        "wrote:",
        "Am",
        "schrieb",
        ":",
        ">",
        "> ",
        "-- ",
        "--",
        "From:",
        "Sent:",
        "To:",
        "Subject:",
        "Von:",
        "От:",
        "Тема:",
        "-----Original Message-----",
        "_____",
        "<a@b.c>",
        "2016-10-24 15:36 GMT+02:00",
        "15:36",
        "Sent from my iPhone",
        "#close",
        "\n",
        "\n",
        "\r\n",
        "\r",
        " ",
        "\u00a0",
        "\t",
        "Begin forwarded message:",
        "écrit",
        "(",
        "*",
    ]
    rng = random.Random(20161024)
    for _ in range(500):
        text = "".join(rng.choice(tokens) + rng.choice(["", " ", "\n"]) for _ in range(60))
        reply = split_reply(text)
        source = set(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")) | {""}
        for part in (reply.new_text, reply.quoted, reply.signature, reply.forwarded):
            assert set(part.split("\n")) <= source


PATHOLOGICAL_LINES = {
    "one huge line": "On " * 350_000,
    "intro openers without end": "On " + "x " * 140 + "wrote\n",
    "repeated keywords ending in a colon": "Am" + " schrieb" * 36 + ":\n",
    "digits and brackets": "1 <" * 95 + "x:\n",
    "digits before an address": "1 " * 140 + "<a@b> x:\n",
    "weak intros": "On Monday John wrote:\n\n",
    "intro and quote pairs": "On 1 Jan 10:00, a@b wrote:\n> x\n",
    "header fields": "From: a\nFrom: a\nTo: b\n",
    "dashes": "-" * 200 + " Original Message" + "-" * 50 + "x\n",
    "delimiters": "--\n",
    "quote marks": "> " * 50 + "\n",
    "blank lines": "\n",
    "carriage returns": "\r",
}


def test_an_overlong_line_is_never_matched_against_marker_patterns() -> None:
    # Matching this line against the intro patterns would take minutes: it must be skipped (it is kept as text).
    text = "1 " * 131_072 + "<a@example.com> wrote:\n"
    reply = split_reply(text)
    assert reply.new_text == text.rstrip("\n")


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL_LINES))
def test_a_megabyte_of_pathological_lines_is_processed_in_linear_time(name: str) -> None:
    line = PATHOLOGICAL_LINES[name]
    text = line * (1_048_576 // len(line))
    # Each of these takes well under a second (runaway backtracking would take minutes); no wall-clock bound
    # here, a loaded machine must not fail it: the result must account for every character.
    reply = split_reply(text)
    assert len(reply.new_text) + len(reply.quoted) + len(reply.signature) <= len(text)


def test_every_quote_intro_ends_with_a_colon_so_a_join_that_does_not_is_never_tried() -> None:
    from mailgate.domain import quotes
    from mailgate.domain.quote_patterns import LANGUAGES

    for lang in LANGUAGES:
        for pattern in (*lang.intros, *lang.tail_intros):
            assert pattern.endswith(":"), (lang.code, pattern)
    # an intro wrapped over three lines whose middle line ends with no colon is still found
    reply = quotes.split_reply("Thanks!\n\nOn Mon, 5 Jan 2026 at 09:00, Bob Example\n<bob@example.com>\nwrote:\n> hi\n")
    assert reply.new_text == "Thanks!" and "wrote:" in reply.quoted
