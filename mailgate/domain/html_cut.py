"""The new part of an HTML reply, cut by the structure mail clients write around quoted history.

Text rules (:mod:`mailgate.domain.quotes`) guess where a quote starts; an HTML reply
says it. Each client marks the history it quotes with one element, and what
the person wrote comes before it:

==========================  ====================================================
Gmail                       ``<div class="gmail_quote">`` (and ``blockquote.gmail_quote``)
Outlook on the web / 365    ``<div id="appendonsend">``, ``<hr>`` + ``<div id="divRplyFwdMsg">``
Outlook desktop             ``<div style="border:none;border-top:solid …">`` around From:/Sent:
Thunderbird                 ``<div class="moz-cite-prefix">`` above ``<blockquote type="cite">``
Apple Mail                  ``<blockquote type="cite">``
Yahoo                       ``<div class="yahoo_quoted">``
==========================  ====================================================

:func:`cut` keeps the HTML before the first such element (an intro line such
as "On … wrote:" right above it goes too); the sanitizer closes what the cut
left open. :func:`drop_commands` removes the command lines an agent typed at
the top. Both work on the raw HTML, before sanitizing (the sanitizer drops the
``class``, ``id`` and ``type`` that mark the structure), with the standard
library's tolerant tokenizer; they never parse more than :data:`MAX_INPUT`.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from html.parser import HTMLParser

from mailgate.mail import tree

MAX_INPUT = 2_000_000
_QUOTE_CLASSES = frozenset({"gmail_quote", "moz-cite-prefix", "yahoo_quoted", "gmail_extra_quote"})
_QUOTE_IDS = frozenset({"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container"})
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)
_BREAKS = frozenset({"br", "wbr"})
_NOT_TEXT = frozenset({"style", "script", "title", "head"})  # their content is never what a person reads


def raw_html(raw: bytes) -> str:
    """The first text/html body part of a mail (not an attachment), decoded; "" when there is none."""
    try:
        message = tree.read(raw, elide=True)  # an answer may carry a big attachment: it is not walked
        for part in message.walk():
            if part.get_content_type() != "text/html":
                continue
            if str(part.get("content-disposition", "")).lower().startswith("attachment"):
                continue
            payload = tree.payload(part)
            charset = part.get_content_charset() or "utf-8"
            try:
                return payload.decode(charset, "replace")
            except LookupError:
                return payload.decode("utf-8", "replace")
    except Exception:  # a mail the stdlib cannot walk has no HTML we can cut
        return ""
    return ""


class _Scanner(HTMLParser):
    """Record where each tag and text run starts, and where the quoted history begins."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=False)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.quote_at: int | None = None
        self.last_hr: int | None = None
        self.texts: list[tuple[int, int, str, int]] = []  # (start, end, text, start of the enclosing tag)
        self.last_tag = 0
        self.tags: list[tuple[int, int, str]] = []  # (start, end, tag name) of every start tag and break
        self.hidden: str = ""  # inside <style>, <script>, <title> or <head>: its end tag

    def _at(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _NOT_TEXT:
            self.hidden = tag
        if self.quote_at is not None:
            return
        start = self._at()
        text = self.get_starttag_text() or ""
        self.tags.append((start, start + len(text), tag))
        if _is_quote(tag, dict(attrs)):
            hr = self.last_hr
            between = self.source[hr:start] if hr is not None else ""
            self.quote_at = hr if hr is not None and not _text_between(between) else start
            return
        if tag == "hr":
            self.last_hr = start
        elif tag not in _BREAKS:
            self.last_tag = start

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == self.hidden:
            self.hidden = ""

    def handle_data(self, data: str) -> None:
        if self.quote_at is not None or self.hidden or not data.strip():
            return
        start = self._at()
        self.texts.append((start, start + len(data), data, self.last_tag))
        self.last_hr = None

    def handle_entityref(self, name: str) -> None:
        if name != "nbsp":
            self.handle_data(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.handle_data(f"&#{name};")


def _is_quote(tag: str, attrs: dict[str, str | None]) -> bool:
    classes = set((attrs.get("class") or "").lower().split())
    if classes & _QUOTE_CLASSES:
        return True
    if (attrs.get("id") or "").lower() in _QUOTE_IDS:
        return True
    if tag == "blockquote" and (attrs.get("type") or "").lower() == "cite":
        return True
    return tag == "div" and bool(_BORDER_TOP.search(attrs.get("style") or ""))


def _text_between(fragment: str) -> bool:
    return bool(re.sub(r"<[^>]*>|&nbsp;|\s", "", fragment))


def _scan(html: str) -> _Scanner:
    scanner = _Scanner(html)
    try:
        scanner.feed(html)
        scanner.close()
    except Exception:  # the tokenizer is tolerant; whatever it could not read stays as it is
        pass
    return scanner


def cut(html: str, is_intro: Callable[[str], bool] | None = None) -> str:
    """The HTML before the quoted history, and before an intro line ("On … wrote:") right above it."""
    html = html[:MAX_INPUT]
    scanner = _scan(html)
    if scanner.quote_at is None:
        return html
    end = scanner.quote_at
    before = [t for t in scanner.texts if t[1] <= end]
    if is_intro is not None and before:
        tail: list[tuple[int, int, str, int]] = []
        for item in reversed(before[-4:]):  # an intro may be split over a few text runs (Gmail's <a>, <b>)
            tail.insert(0, item)
            words = " ".join(_entity_free(t[2]) for t in tail)
            if is_intro(" ".join(words.split())):
                end = tail[0][3] if tail[0][3] < tail[0][0] else tail[0][0]
                break
    return html[:end]


def _entity_free(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", '"')


def drop_commands(html: str, command_lines: Iterable[str]) -> str:
    """The HTML without the command lines at its top (and the line breaks between them)."""
    wanted = [" ".join(line.split()) for line in command_lines]
    if not wanted:
        return html
    scanner = _scan(html[:MAX_INPUT])
    cuts: list[tuple[int, int]] = []
    top = 0
    for start, end, text, _tag in scanner.texts:
        if not wanted or " ".join(_entity_free(text).split()) != wanted[0]:
            break
        wanted.pop(0)
        cuts.append((start, end))
        top = end
    if not cuts:
        return html
    starts = [s for s, _, _ in scanner.tags]
    for index in range(bisect_right(starts, top)):  # the breaks that separated the commands
        start, end, tag = scanner.tags[index]
        if tag in _BREAKS:
            cuts.append((start, end))
    next_text = next((t[0] for t in scanner.texts if t[0] >= top), len(html))
    cuts += [(s, e) for s, e, tag in scanner.tags if tag in _BREAKS and top <= s < next_text]
    kept, position = [], 0
    for start, end in sorted(set(cuts)):
        if start >= position:
            kept.append(html[position:start])
            position = end
    kept.append(html[position:])
    return "".join(kept)
