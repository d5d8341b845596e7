"""The subject token survives reply prefixes and is never doubled or stacked."""

from __future__ import annotations

import pytest

from mailgate.domain.tokens import clean_subject, find_ticket_number, subject_with_token


@pytest.mark.parametrize(
    "subject",
    [
        "[#12] Printer",
        "Re: [#12] Printer",
        "AW: Printer [#12]",
        "SV: [ #12 ]",
        "Ответ: Re: Принтер [#12]",
        "Fwd: RE: [#12]",
        "TR: [#12] Imprimante",
    ],
)
def test_token_found_through_prefixes(subject):
    assert find_ticket_number(subject) == 12


def test_prefix_tokens():
    assert find_ticket_number("Re: [ACME#7] hi", "ACME") == 7
    assert find_ticket_number("Re: [#7] hi", "ACME") is None
    assert find_ticket_number("no token here") is None
    assert find_ticket_number("#12 is not a token") is None


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Printer on fire", "[#3] Printer on fire"),
        ("Re: Re: Printer on fire", "[#3] Printer on fire"),
        ("RE: [#3] Printer on fire", "[#3] Printer on fire"),
        ("Re: [#3] Re: [#3] Printer on fire", "[#3] Printer on fire"),
        ("AW: WG: Drucker", "[#3] Drucker"),
        ("Ответ: Принтер", "[#3] Принтер"),
        ("", "[#3]"),
    ],
)
def test_subject_with_token_is_clean(subject, expected):
    assert subject_with_token(subject, 3) == expected


def test_clean_subject_keeps_words_that_look_like_prefixes():
    assert clean_subject("Regarding: invoice") == "Regarding: invoice"
    assert clean_subject("Re: Fwd: invoice") == "invoice"
