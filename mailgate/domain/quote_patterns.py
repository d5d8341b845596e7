"""The per-language table of what mail clients write around a quoted reply.

Every mail client writes the same few things, in the language of its user:
the line that introduces a quote ("On … wrote:"), the separator of an Outlook
reply ("-----Original Message-----"), the header block of the quoted message
(From:/Sent:/To:/Subject:), the marker of a forward, and the footer a phone
app adds below the text ("Sent from my iPhone"). This module lists them, one
`Language` entry per language, so that teaching mailgate a new language or a
new client is one edit in one place. `mailgate.domain.quotes` compiles the table
once, at import; it holds no logic of its own.

How the entries are read:

* Regular expressions are matched case-insensitively against a *whole* line
  whose runs of whitespace (the no-break space French clients put before a
  colon included) have been collapsed to one space, ends stripped. A quote
  intro may also be matched against two such lines joined by a space, since
  clients wrap long intros.
* Lines longer than `quotes.MAX_MARKER_LEN` characters are never matched, so a
  pattern may use one or two `.+` gaps without making the scan slow; do not
  nest repetitions (`(a+)+`).
* Phrases (`original_message`, `forward_phrases`, header names) are plain
  text; they are escaped when compiled.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    """What the mail clients of one language write around quoted history."""

    code: str
    # Quote intros that open with a fixed word: "On … wrote:". Accepted as an
    # intro when a ">" block follows, or when they hold a digit or an "@".
    # Every intro (and tail intro) ends with a colon: the scan skips any join of
    # lines that does not.
    intros: tuple[str, ...] = ()
    # Quote intros known only by their ending: "… написал(а):". Too easy to
    # meet in plain prose ("As Anna wrote:"), so accepted only when the line
    # holds a digit, an "@" or a "<".
    tail_intros: tuple[str, ...] = ()
    # Words between the dashes of "-----Original Message-----".
    original_message: tuple[str, ...] = ()
    # Words between the dashes of "---------- Forwarded message ---------".
    forward_phrases: tuple[str, ...] = ()
    # Whole-line forward markers without dashes: "Begin forwarded message:".
    forward_intros: tuple[str, ...] = ()
    # The name of the sender field that opens an Outlook header block.
    header_from: tuple[str, ...] = ()
    # The other fields of that block (sent, date, to, cc, subject).
    header_fields: tuple[str, ...] = ()
    # Footers that phone and webmail apps add below the new text.
    mobile_footers: tuple[str, ...] = ()


# A mail address inside angle brackets, as Gmail and Yandex write it; Gmail may
# wrap the line right after "<", which the join turns into "< ".
_ADDR = r"\(?< ?[^\s<>]+@[^\s<>]+ ?>\)?"

LANGUAGES: tuple[Language, ...] = (
    Language(
        code="any",
        intros=(
            # Gmail in several locales: "2016-10-24 15:36 GMT+02:00 Name <addr>:"
            r"\d{4}-\d{2}-\d{2} \d{1,2}:\d{2} GMT ?[+-]\d{1,2}:\d{2} .+:",
        ),
        tail_intros=(
            # Gmail (ru, pl …), Yandex, Mail.ru: "<date>, Name <addr>:"
            r".*\d.* " + _ADDR + " ?:",
        ),
    ),
    Language(
        code="en",
        intros=(r"On .+ wrote ?:",),
        tail_intros=(r".+ wrote ?:", r".+ wrote on .+:"),
        original_message=("Original Message", "Reply Message"),
        forward_phrases=("Forwarded message", "Forwarded e-mail", "Forwarded email"),
        forward_intros=(r"Begin forwarded message ?:",),
        header_from=("From",),
        header_fields=("Sent", "Date", "To", "Cc", "Bcc", "Subject", "Reply-To"),
        mobile_footers=(
            r"Sent from my .{1,80}",
            r"Sent from (?:Mail|Outlook|Yahoo Mail|AOL|Gmail|Proton ?Mail|Samsung|BlackBerry"
            r"|Huawei|Xiaomi|iPhone|iPad|Android)\b.{0,80}",
            r"Sent (?:via|with|using) .{0,60}\b(?:phone|smartphone|mobile|Android|iPhone|iPad|"
            r"Galaxy|BlackBerry|Proton ?Mail|Outlook|Spark|BlueMail)\b.{0,60}",
            r"Get Outlook for (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="fr",
        intros=(r"Le .+ a [ée]crit ?:",),
        tail_intros=(r".+ a [ée]crit ?:",),
        original_message=("Message d'origine", "Message original", "Message d’origine"),
        forward_phrases=("Message transféré", "Message réexpédié", "Courriel transféré"),
        forward_intros=(r"Début du message (?:réexpédié|transféré) ?:",),
        header_from=("De",),
        header_fields=("Envoyé", "Date", "À", "A", "Cc", "Objet", "Répondre à"),
        mobile_footers=(
            r"Envoy[ée] (?:de|depuis|à partir de) (?:mon|ma) .{1,80}",
            r"Envoy[ée] (?:de|depuis|à partir de|avec) (?:Outlook|Courrier|Yahoo Mail|Gmail|"
            r"l'application|iPhone|iPad|Android)\b.{0,80}",
            r"(?:Obtenir|Télécharger) Outlook pour (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="de",
        intros=(r"Am .+ schrieb .+:",),
        tail_intros=(r".+ schrieb ?:", r".+ schrieb am .+:"),
        original_message=("Ursprüngliche Nachricht", "Originalnachricht", "Original-Nachricht"),
        forward_phrases=("Weitergeleitete Nachricht", "Weitergeleitete E-Mail"),
        forward_intros=(r"Anfang der weitergeleiteten (?:Nachricht|E-Mail) ?:",),
        header_from=("Von",),
        header_fields=("Gesendet", "Datum", "An", "Cc", "Kopie", "Betreff", "Antwort an"),
        mobile_footers=(
            r"Von meinem .{1,80} gesendet\.?",
            r"Gesendet (?:von|vom|mit|aus|über) .{1,80}",
            r"Von Outlook für (?:iOS|Android) gesendet.{0,80}",
            r"Outlook für (?:iOS|Android) (?:beziehen|herunterladen).{0,80}",
        ),
    ),
    Language(
        code="it",
        intros=(r"Il .+ ha scritto ?:",),
        tail_intros=(r".+ ha scritto ?:",),
        original_message=("Messaggio originale",),
        forward_phrases=("Messaggio inoltrato",),
        forward_intros=(r"Inizio messaggio inoltrato ?:",),
        header_from=("Da",),
        header_fields=("Inviato", "Data", "A", "Cc", "Oggetto", "Rispondi a"),
        mobile_footers=(
            r"Inviato da .{1,80}",
            r"Inviato dal mio .{1,80}",
            r"(?:Scarica|Ottieni) Outlook per (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="es",
        intros=(r"El .+ escribi[óo] ?:",),
        tail_intros=(r".+ escribi[óo] ?:",),
        original_message=("Mensaje original",),
        forward_phrases=("Mensaje reenviado",),
        forward_intros=(r"Inicio del mensaje reenviado ?:",),
        header_from=("De",),
        header_fields=("Enviado el", "Enviado", "Fecha", "Para", "CC", "CCO", "Asunto"),
        mobile_footers=(
            r"Enviado desde .{1,80}",
            r"(?:Obtener|Descargar) Outlook para (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="pt",
        intros=(r"Em .+ escreveu ?:",),
        tail_intros=(r".+ escreveu ?:", r".+ escreveu .+:"),
        original_message=("Mensagem original",),
        forward_phrases=("Mensagem encaminhada", "Mensagem reencaminhada"),
        forward_intros=(r"In[íi]cio da mensagem (?:reencaminhada|encaminhada) ?:",),
        header_from=("De",),
        header_fields=(
            "Enviada em",
            "Enviado em",
            "Enviada",
            "Enviado",
            "Data",
            "Para",
            "Cc",
            "Assunto",
        ),
        mobile_footers=(
            r"Enviad[oa] (?:do|da|de|pelo|pela|a partir do) (?:meu|minha) .{1,80}",
            r"Enviad[oa] (?:do|da|de|pelo|pela|a partir do) (?:Email|E-mail|Outlook|iPhone|"
            r"iPad|Android|Yahoo Mail|Gmail)\b.{0,80}",
            r"(?:Obter o|Obtenha o|Baixe o|Baixar o) Outlook para (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="nl",
        intros=(r"Op .+ schreef .+:", r"Op .+ heeft .+ geschreven ?:"),
        tail_intros=(r".+ schreef ?:", r".+ schreef .+:"),
        original_message=(
            "Oorspronkelijk bericht",
            "Origineel bericht",
            "Oorspronkelijk e-mailbericht",
        ),
        forward_phrases=("Doorgestuurd bericht",),
        forward_intros=(r"Begin doorgestuurd bericht ?:",),
        header_from=("Van",),
        header_fields=("Verzonden", "Datum", "Aan", "CC", "Onderwerp"),
        mobile_footers=(
            r"(?:Verzonden|Verstuurd) (?:vanaf|met|via|van) .{1,80}",
            r"Outlook voor (?:iOS|Android) downloaden.{0,80}",
            r"Download Outlook voor (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        # Swedish; Danish and Norwegian share "skrev" and most header names.
        code="sv",
        intros=(r"Den .+ skrev .+:",),
        tail_intros=(r".+ skrev ?:", r".+ skrev .+:"),
        original_message=(
            "Originalmeddelande",
            "Ursprungligt meddelande",
            "Oprindelig meddelelse",
            "Opprinnelig melding",
        ),
        forward_phrases=(
            "Vidarebefordrat meddelande",
            "Videresendt meddelelse",
            "Videresendt melding",
        ),
        forward_intros=(r"Vidarebefordrat brev ?:", r"Början av vidarebefordrat meddelande ?:"),
        header_from=("Från", "Fra"),
        header_fields=("Skickat", "Datum", "Till", "Kopia", "Ämne", "Sendt", "Dato", "Til", "Emne"),
        mobile_footers=(
            r"Skickat från .{1,80}",
            r"Skickades från .{1,80}",
            r"Sendt fra .{1,80}",
            r"Hämta Outlook för (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="pl",
        intros=(r"W dniu .+ (?:napisał\(a\)|napisał|napisała|pisze) ?:",),
        tail_intros=(r".+ (?:napisał\(a\)|napisał|napisała|pisze) ?:",),
        original_message=("Wiadomość oryginalna", "Oryginalna wiadomość"),
        forward_phrases=(
            "Wiadomość przekazana dalej",
            "Przekazana wiadomość",
            "Wiadomość przesłana dalej",
        ),
        forward_intros=(r"Początek przekazywanej wiadomości ?:",),
        header_from=("Od",),
        header_fields=("Wysłano", "Wysłane", "Data", "Do", "DW", "UDW", "Temat"),
        mobile_footers=(
            r"Wysłan[eo] z .{1,80}",
            r"Pobierz (?:aplikację )?Outlook dla .{1,80}",
        ),
    ),
    Language(
        code="ru",
        tail_intros=(r".+ (?:написал\(а\)|написал|написала|пишет) ?:",),
        original_message=("Исходное сообщение", "Оригинальное сообщение"),
        forward_phrases=("Пересланное сообщение", "Пересылаемое сообщение", "Пересланное письмо"),
        forward_intros=(r"Начало (?:переадресованного|пересылаемого) сообщения ?:",),
        header_from=("От",),
        header_fields=("Отправлено", "Дата", "Кому", "Копия", "Тема"),
        mobile_footers=(
            r"Отправлено (?:с|со|из) .{1,80}",
            r"Получить Outlook для (?:iOS|Android).{0,80}",
        ),
    ),
    Language(
        code="uk",
        tail_intros=(r".+ (?:пише|написав\(ла\)|написав|написала) ?:",),
        original_message=("Оригінальне повідомлення", "Вихідне повідомлення"),
        forward_phrases=("Переслане повідомлення", "Пересланий лист"),
        forward_intros=(r"Початок пересланого повідомлення ?:",),
        header_from=("Від",),
        header_fields=("Надіслано", "Відправлено", "Дата", "Кому", "Копія", "Тема"),
        mobile_footers=(
            r"(?:Надіслано|Відправлено) (?:з|із|зі) .{1,80}",
            r"Отримати Outlook для (?:iOS|Android).{0,80}",
        ),
    ),
)
