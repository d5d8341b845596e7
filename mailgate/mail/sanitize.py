"""The one seam through which mail HTML becomes safe to store and show.

nh3 (the ammonia sanitizer) does the cleaning, with our allow-list. It is not
linear on deep nesting, and a mail is written by a stranger, so the HTML is
first bounded by a single forward scan: nesting past MAX_DEPTH is flattened
(the tag goes, its content stays), markup past MAX_TAGS is dropped, attributes
past MAX_ATTRIBUTES on one tag are dropped, and the whole is cut at MAX_HTML.
The scan re-emits every tag it recognised in a normal form and escapes every
other ``<``, so nh3 never sees more structure than the scan counted. Each bound
that was hit is returned as a note for the mail's defects.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

import nh3

MAX_HTML = 2_000_000
MAX_DEPTH = 100
MAX_TAGS = 20_000
MAX_ATTRIBUTES = 50

SAFE_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "code",
        "div",
        "em",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    }
)
SAFE_ATTRIBUTES = {
    "a": ["href", "title"],
    "img": ["src", "alt", "width", "height"],
    "td": ["colspan", "rowspan"],
    "th": ["colspan", "rowspan"],
    "*": ["dir", "lang"],
}
SAFE_PROTOCOLS = frozenset({"http", "https", "mailto", "cid"})

_NH3_ATTRIBUTES = {tag: set(names) for tag, names in SAFE_ATTRIBUTES.items()}
# Tags whose content goes with them: code, never text to show.
_CLEAN_CONTENT = {"script", "style"}
# Elements that never have content or an end tag; they do not deepen the tree.
_VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)
# Elements whose content the HTML parser reads as text up to their own end tag. None is allowed; the content of
# those where entities mean nothing (RAWTEXT) is code or a fallback and goes with them, that of textarea and title
# (RCDATA) is text and stays, with its < escaped, which means the same there.
_RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "textarea", "title", "noscript"})
_RCDATA = frozenset({"textarea", "title"})
# Only a < before one of these can start markup; any other < is text.
_TAG_START = re.compile(r"<[A-Za-z/!?]")
# Quoted values may hold < and >; an unquoted value or a name may not hold <, so a failed match is cheap.
_TAG = re.compile(r"""<(/?)([A-Za-z][^\t\n\f\r /<>]*)((?:[^<>"'=]++|["']|=\s*"[^"]*"|=\s*'[^']*'|=(?!\s*["']))*+)>""")
_ATTRIBUTE = re.compile(r"""([^\s"'=/>]+|["'][^\s=/>]*)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
_NAME = re.compile(r"[A-Za-z_:][-\w:.]*")
_RAW_END: dict[str, re.Pattern[str]] = {name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in _RAW_TEXT}


def sanitize(html: str) -> tuple[str, list[str]]:
    """Safe HTML from any HTML, in work linear in its size, and a note for each bound it hit."""
    if not html.strip():
        return "", []
    notes: list[str] = []
    if len(html) > MAX_HTML:
        html = html[:MAX_HTML]
        notes.append(f"HtmlTooLarge: the HTML part was cut at {MAX_HTML} characters")
    bounded, bound_notes = bound(html.replace("\x00", "\ufffd"))
    notes.extend(bound_notes)
    return _cleaner().clean(bounded), notes


@functools.cache
def _cleaner() -> nh3.Cleaner:
    """Built once: ``nh3.clean`` converts the allow-lists into a new cleaner on every call (a fifth of its time)."""
    return nh3.Cleaner(
        tags=set(SAFE_TAGS),
        clean_content_tags=_CLEAN_CONTENT,
        attributes=_NH3_ATTRIBUTES,
        url_schemes=set(SAFE_PROTOCOLS),
        strip_comments=True,
        link_rel=None,
    )


def bound(html: str) -> tuple[str, list[str]]:
    """Re-emit ``html`` within MAX_DEPTH, MAX_TAGS and MAX_ATTRIBUTES, in one forward pass.

    The open elements are kept on a stack with a count per name, so matching an end tag
    pops each element once at most: the pass stays linear however the tags are nested.
    """
    out: list[str] = []
    stack: list[str] = []
    open_names: Counter[str] = Counter()
    flattened_open: Counter[str] = Counter()
    flattened = attributes_dropped = tags = 0
    cut = False
    pos, end = 0, len(html)
    while pos < end:
        start = _TAG_START.search(html, pos)
        if start is None:
            out.append(html[pos:].replace("<", "&lt;"))
            break
        lt = start.start()
        out.append(html[pos:lt].replace("<", "&lt;"))
        if html.startswith("<!", lt) or html.startswith("<?", lt):
            close = html.find("-->", lt + 2) if html.startswith("<!--", lt) else html.find(">", lt)
            if close < 0:
                break  # an unterminated comment or declaration runs to the end: nothing after it is markup
            pos = close + (3 if html.startswith("<!--", lt) else 1)
            continue
        match = _TAG.match(html, lt)
        if match is None:
            out.append("&lt;")
            pos = lt + 1
            continue
        tags += 1
        if tags > MAX_TAGS:
            cut = True
            break
        pos = match.end()
        closing, name, rest = match.group(1) == "/", match.group(2).lower(), match.group(3)
        if closing:
            if flattened_open[name]:
                flattened_open[name] -= 1
            elif open_names[name]:
                while stack:
                    top = stack.pop()
                    open_names[top] -= 1
                    out.append(f"</{top}>")
                    if top == name:
                        break
            continue
        if name in _RAW_TEXT:
            found = _RAW_END[name].search(html, pos)
            content_end = found.start() if found else end
            after = html.find(">", content_end) + 1 if found else end
            if len(stack) >= MAX_DEPTH:
                flattened += 1
            elif name in _RCDATA:
                out.append(f"<{name}>{html[pos:content_end].replace('<', '&lt;')}</{name}>")
            pos = after or end
            continue
        if len(stack) >= MAX_DEPTH:
            flattened += 1
            if name not in _VOID:
                flattened_open[name] += 1
            continue
        tag, dropped = _normal_tag(name, rest)
        attributes_dropped += dropped
        out.append(tag)
        if name not in _VOID:  # HTML ignores "/>" on other elements; counting them open can only over-count
            stack.append(name)
            open_names[name] += 1
    notes = []
    if flattened:
        notes.append(f"HtmlTooDeep: {flattened} tags nested deeper than {MAX_DEPTH} were flattened")
    if cut:
        notes.append(f"HtmlTooManyTags: the markup after the first {MAX_TAGS} tags was dropped")
    if attributes_dropped:
        notes.append(
            f"HtmlTooManyAttributes: {attributes_dropped} attributes past {MAX_ATTRIBUTES} on a tag were dropped"
        )
    return "".join(out), notes


def _normal_tag(name: str, rest: str) -> tuple[str, int]:
    """The start tag with at most MAX_ATTRIBUTES attributes, every value double-quoted with < escaped."""
    if not rest.strip(" \t\n\r\f/"):
        return f"<{name}>", 0
    parts = []
    count = 0
    for match in _ATTRIBUTE.finditer(rest):
        count += 1
        if count > MAX_ATTRIBUTES:
            continue
        attr, value = match.group(1), match.group(2)
        if not _NAME.fullmatch(attr):
            continue  # no allowed attribute has such a name; dropping it keeps every < out of the names
        if value is None:
            parts.append(attr)
            continue
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        escaped = value.replace('"', "&quot;").replace("<", "&lt;")
        parts.append(f'{attr}="{escaped}"')
    return f"<{name} {' '.join(parts)}>", max(0, count - MAX_ATTRIBUTES)


def html_to_text(clean_html: str) -> str:
    """A plain-text reading of HTML that ``sanitize`` already cleaned: it does not sanitize again.

    inscriptis lays the text out as a browser would (paragraphs, list bullets and
    numbers, table cells, entities), with link targets kept as ``[text](url)``; it
    and lxml are imported here, on first use, so a plain-text mail never pays for them.
    """
    if not clean_html or not clean_html.strip():
        return ""
    from inscriptis import get_text
    from inscriptis.css_profiles import CSS_PROFILES
    from inscriptis.model.config import ParserConfig

    try:
        text = get_text(clean_html, ParserConfig(css=CSS_PROFILES["strict"], display_links=True))
    except Exception:  # lxml refuses some inputs (e.g. only a comment): no text, the HTML is still kept
        return ""
    text = _SELF_LINK.sub(r"\1", text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


_SELF_LINK = re.compile(r"\[([^\[\]\n]{1,2000})\]\(\1\)")  # a bare URL is a link to itself: shown once
