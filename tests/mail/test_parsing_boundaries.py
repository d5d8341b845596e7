"""A multipart's boundary is matched line for line as the feed parser's own expression matches it, uncompiled.

The stdlib's feed parser compiles a regular expression from each boundary it meets (a new one in every
mail, ~140 µs). ``mailgate.mail.tree`` gives the parser a ``re`` whose ``compile`` turns exactly that
expression into a literal prefix and a tail compiled once; every answer must be the expression's.
"""

from __future__ import annotations

import email
import email.feedparser
import itertools
import re
from email import policy

import pytest

from mailgate.mail import tree
from tests.mail.trees import sample_mails, shape

TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
BOUNDARIES = [
    "simple",
    "=_Part_0_1.2",
    "a(b)c?d*e+f",
    "with space",
    "tab\there",
    "back\\slash",
    "é-ü",
    "-",
    "[x]{2}$^|",
]
ENDINGS = [
    "",
    "\r\n",
    "\r",
    "\n",
    "--",
    "--\r\n",
    "--\n",
    " \t\r\n",
    "-- \n",
    "---\r\n",
    "x\r\n",
    " x",
    "\r\n\r\n",
    "--x",
]


def _expression(separator: str) -> str:
    return "(?P<sep>" + re.escape(separator) + TAIL


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_every_line_matches_as_the_compiled_expression_matches_it(boundary):
    separator = "--" + boundary
    ours, theirs = tree.compile_pattern(_expression(separator)), re.compile(_expression(separator))
    assert not isinstance(ours, re.Pattern), "the boundary expression was compiled after all"
    lines = [separator + ending for ending in ENDINGS] + [separator[:-1], "", "x" + separator, separator.upper()]
    for line in lines:
        mine, real = ours.match(line), theirs.match(line)
        assert (mine is None) == (real is None), repr(line)
        if real is not None:
            for group in ("end", "ws", "linesep"):
                assert mine.group(group) == real.group(group), (repr(line), group)


def test_any_other_expression_is_compiled_as_asked():
    for pattern, flags in (("abc", 0), (_expression("--b"), re.IGNORECASE), ("(?P<sep>x" + TAIL + "y", 0)):
        assert tree.compile_pattern(pattern, flags) == re.compile(pattern, flags)
    lookalike = "(?P<sep>" + "a.b" + TAIL  # an unescaped dot: not what re.escape makes of any separator
    assert isinstance(tree.compile_pattern(lookalike), re.Pattern)


def _corpus():
    nested = (
        b'Content-Type: multipart/mixed; boundary="out.er"\r\n\r\npreamble\r\n--out.er\r\n'
        b'Content-Type: multipart/alternative; boundary="in(ner)"\r\n\r\n--in(ner)  \r\n\r\nplain\r\n'
        b"--in(ner)\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--in(ner)--\r\n--out.er\r\n\r\nlast\r\n--out.er--"
    )
    return [*sample_mails(), ("nested", nested)]


CORPUS = _corpus()


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
def test_the_tree_is_the_one_the_stdlib_builds_with_its_own_expressions(name, raw, monkeypatch):
    ours = shape(email.message_from_bytes(raw, policy=policy.compat32))
    monkeypatch.setattr(email.feedparser, "re", re)
    assert ours == shape(email.message_from_bytes(raw, policy=policy.compat32))


def test_parsing_a_multipart_compiles_nothing_for_its_boundaries(monkeypatch):
    compiled = []
    real = re.compile
    monkeypatch.setattr(re, "compile", lambda pattern, flags=0: compiled.append(pattern) or real(pattern, flags))
    for index in itertools.islice(itertools.count(), 3):
        boundary = f"neverseen{index}"
        head = f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        raw = head + f"--{boundary}\r\n\r\nhi\r\n--{boundary}--\r\n"
        message = tree.read(raw.encode())
        assert message.get_payload()[0].get_payload() == "hi"
    assert not [p for p in compiled if "neverseen" in p]
