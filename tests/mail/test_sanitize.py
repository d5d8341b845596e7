"""The HTML seam: what a hostile sender writes comes out inside the allow-list, and only once through nh3."""

from __future__ import annotations

from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from mailgate.mail import sanitize as sanitize_module
from mailgate.mail.parse import parse
from mailgate.mail.sanitize import SAFE_ATTRIBUTES, SAFE_PROTOCOLS, SAFE_TAGS, html_to_text, sanitize

HOSTILE = {
    "script": '<p>hi</p><script>alert(1)</script><SCRIPT SRC="//x.example/a.js"></SCRIPT>',
    "event handlers": '<img src="https://a.example/x.png" onerror="alert(1)" ONLOAD=alert(2)>'
    "<div onmouseover=x()>t</div>",
    "javascript urls": '<a href="javascript:alert(1)">a</a><a href="JaVaScRiPt:alert(1)">b</a>'
    '<a href="&#106;avascript:alert(1)">c</a><a href="java&#x09;script:alert(1)">d</a>'
    '<a href=" javascript:alert(1)">e</a><a href="&#x6A;&#x61;vascript&colon;alert(1)">f</a>',
    "data urls": '<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>'
    '<img src="DATA:image/svg+xml,<svg onload=alert(1)>">',
    "vbscript urls": '<a href="vbscript:msgbox(1)">x</a><a href="VbScRiPt&#58;msgbox(1)">y</a>',
    "css": '<div style="width: expression(alert(1))">x</div><p style="background:url(javascript:alert(1))">y</p>'
    "<style>body{behavior:url(x.htc)}</style>",
    "svg and mathml": '<svg onload=alert(1)><script>alert(1)</script><a xlink:href="javascript:alert(1)">x</a></svg>'
    "<math><mtext><mglyph><style><img src=x onerror=alert(1)></style></mglyph></mtext></math>",
    "noscript mxss": '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    "template and comment mxss": "<template><img src=x onerror=alert(1)></template>"
    "<!--<img src=x onerror=alert(1)>--><!--><img src=y onerror=alert(2)>--><!-- a --!><b onclick=x()>b</b>",
    "active elements": '<iframe src="https://evil.example"></iframe><form action="https://evil.example">'
    '<input name=p><button formaction="javascript:alert(1)">go</button></form>'
    '<meta http-equiv="refresh" content="0;url=https://evil.example"><base href="https://evil.example/">'
    '<object data="x.swf"></object><embed src="x.swf"><link rel=stylesheet href="https://evil.example/x.css">',
}


def html_only_mail(html: str) -> bytes:
    """A mail with a single text/html body, as newsletters send it."""
    msg = EmailMessage()
    msg["From"] = "Alice <alice@customer.example>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "HTML only"
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


class Tree(HTMLParser):
    """Every tag and attribute of an HTML text, and its greatest nesting depth."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.depth = self.max_depth = 0
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        if tag not in ("br", "hr", "img"):
            self.depth += 1
            self.max_depth = max(self.max_depth, self.depth)

    def handle_endtag(self, tag: str) -> None:
        self.depth -= 1


def assert_inside_the_allow_list(html: str) -> None:
    for tag, attrs in Tree(html).tags:
        assert tag in SAFE_TAGS, tag
        allowed = set(SAFE_ATTRIBUTES.get(tag, [])) | set(SAFE_ATTRIBUTES["*"])
        for name, value in attrs:
            assert name in allowed, (tag, name)
            if name in ("href", "src") and value and ":" in value:
                assert value.split(":", 1)[0].strip().lower() in SAFE_PROTOCOLS, value


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_html_comes_out_inside_the_allow_list(name):
    clean, notes = sanitize(HOSTILE[name])
    assert_inside_the_allow_list(clean)
    lowered = clean.lower()
    for word in (
        "script",
        "javascript",
        "vbscript",
        "data:",
        "expression",
        "onerror",
        "onload",
        "onclick",
        "style",
        "iframe",
        "<form",
        "<meta",
        "<base",
        "<object",
        "<embed",
        "<svg",
        "<math",
        "<link",
    ):
        assert word not in lowered, (word, clean)
    assert notes == []


def test_the_safe_parts_of_hostile_html_are_kept():
    assert sanitize(HOSTILE["script"])[0] == "<p>hi</p>"
    assert sanitize(HOSTILE["event handlers"])[0] == '<img src="https://a.example/x.png"><div>t</div>'
    assert sanitize(HOSTILE["javascript urls"])[0] == "<a>a</a><a>b</a><a>c</a><a>d</a><a>e</a><a>f</a>"
    assert sanitize(HOSTILE["css"])[0] == "<div>x</div><p>y</p>"


def test_the_allow_list_is_kept_with_its_attributes_and_protocols():
    html = (
        '<p dir="rtl" lang="ar">t</p><a href="mailto:a@b.example" title="T">m</a>'
        '<a href="https://shop.example/?a=1&amp;b=2">s</a><img src="cid:logo" alt="L" width="10" height="5">'
        '<table><tr><td colspan="2" rowspan="1">c</td></tr></table>'
    )
    clean, _ = sanitize(html)
    assert clean == (
        '<p dir="rtl" lang="ar">t</p><a href="mailto:a@b.example" title="T">m</a>'
        '<a href="https://shop.example/?a=1&amp;b=2">s</a><img src="cid:logo" alt="L" width="10" '
        'height="5"><table><tbody><tr><td colspan="2" rowspan="1">c</td></tr></tbody></table>'
    )


def test_a_quoted_attribute_value_may_hold_angle_brackets():
    clean, _ = sanitize('<a href="https://a.example/" title="a > b <c>">link</a> after')
    assert clean == '<a href="https://a.example/" title="a &gt; b &lt;c&gt;">link</a> after'
    assert html_to_text(clean) == "[link](https://a.example/) after"


def test_a_lone_angle_bracket_is_text():
    assert sanitize("a < b & c <3 <-- d")[0] == "a &lt; b &amp; c &lt;3 &lt;-- d"


def test_a_parsed_mail_runs_the_sanitizer_once_and_its_text_comes_from_the_clean_html(monkeypatch):
    calls = []
    real = sanitize_module._cleaner()

    class Counting:
        def clean(self, html):
            calls.append(html)
            return real.clean(html)

    monkeypatch.setattr(sanitize_module, "_cleaner", Counting)
    mail = parse(html_only_mail("<p>Hello <b>you</b></p><script>alert(1)</script><div>bye</div>"))
    assert len(calls) == 1
    assert mail.html.strip() == "<p>Hello <b>you</b></p><div>bye</div>"
    assert mail.text == "Hello you\n\nbye"


def test_html_to_text_reads_breaks_and_entities_of_clean_html():
    assert html_to_text("<p>a &amp; b</p><p>&lt;c&gt;&nbsp;d</p><br>e") == "a & b\n\n<c> d\n\ne"


def test_a_less_than_sign_that_starts_no_tag_stays_text():
    assert sanitize("<a<b>x</b> <<< </ <1>")[0] == "&lt;a<b>x</b> &lt;&lt;&lt; &lt;/ &lt;1&gt;"


def test_the_bound_re_emits_tags_with_well_formed_names_and_quoted_escaped_values():
    bounded, notes = sanitize_module.bound("""<a href="https://x.example/?q=<b>" ="<i>" "q=1 title='a"b'>t</a>""")
    assert bounded == '<a href="https://x.example/?q=&lt;b>" title="a&quot;b">t</a>'
    assert notes == []
