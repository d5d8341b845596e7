"""Bytes to text the way mail clients read them, never leaving a surrogate escape behind.

A declared charset is read through the superset browsers use for the same
label (the WHATWG Encoding Standard): a mail labelled GB2312 is usually GBK,
one labelled ISO-8859-1 or US-ASCII is usually windows-1252, and so on.
ISO-2022-JP is read with the CP932 (Microsoft) extensions Japanese clients
write, UTF-7 with its codec. When no charset is declared, or the declared one
cannot read the bytes, valid UTF-8 is taken as UTF-8 and anything else goes to
a detector (charset-normalizer). Every decision is returned so an admin can
see why a text reads as it does (``mailgate mail parse``).

The common path stays cheap: UTF-8 or ASCII bytes are decoded once, strictly,
and the detector is imported only when it is needed.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

# WHATWG labels whose bytes are best read by a superset codec (label -> Python codec).
_SUPERSETS = {
    **dict.fromkeys(
        ("gb2312", "gbk", "x-gbk", "chinese", "csgb2312", "iso-ir-58", "gb_2312-80", "cp936", "gb18030", "euc-cn"),
        "gb18030",
    ),
    **dict.fromkeys(
        (
            "iso-8859-1",
            "iso8859-1",
            "latin1",
            "latin-1",
            "l1",
            "cp819",
            "ibm819",
            "iso_8859-1",
            "us-ascii",
            "ascii",
            "ansi_x3.4-1968",
            "us",
            "iso646-us",
            "windows-1252",
            "cp1252",
            "x-cp1252",
        ),
        "cp1252",
    ),
    **dict.fromkeys(("big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"), "big5hkscs"),
    **dict.fromkeys(
        (
            "ks_c_5601-1987",
            "ks_c_5601-1989",
            "ksc5601",
            "ksc_5601",
            "euc-kr",
            "korean",
            "iso-ir-149",
            "csksc56011987",
            "windows-949",
            "cp949",
        ),
        "cp949",
    ),
    **dict.fromkeys(
        ("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "windows-31j", "cp932"), "cp932"
    ),
    **dict.fromkeys(("iso-8859-9", "latin5", "l5", "iso_8859-9"), "cp1254"),
    **dict.fromkeys(("iso-8859-11", "tis-620", "windows-874"), "cp874"),
    **dict.fromkeys(("iso-8859-8-i", "iso-8859-8-e", "logical", "visual"), "iso8859-8"),
    **dict.fromkeys(("utf-7", "unicode-1-1-utf-7", "csunicode11utf7", "x-utf-7"), "utf-7"),
    **dict.fromkeys(("iso-2022-jp", "csiso2022jp", "iso-2022-jp-1", "iso-2022-jp-2"), "iso-2022-jp"),
    **dict.fromkeys(("utf-8", "utf8", "unicode-1-1-utf-8", "x-unicode20utf8"), "utf-8"),
}
# Labels that mean "no idea": read like a mail with no charset at all.
_UNKNOWN = frozenset(
    {"", "unknown", "unknown-8bit", "x-unknown", "default", "charset", "8bit", "binary", "none", "x-user-defined"}
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_LATIN_LABELS = frozenset({"cp1252"})
MAX_DETECT = 200_000  # bytes the detector looks at; the whole text is then decoded with what it found


@dataclass(frozen=True)
class Decision:
    """How one text was read: the label it declared, the codec used, and why."""

    declared: str
    used: str
    how: str  # declared | superset | utf-8 | detected | replaced

    def as_dict(self) -> dict[str, str]:
        return {"declared": self.declared, "used": self.used, "how": self.how}


def codec_for(label: str | None) -> str | None:
    """The Python codec for a charset label (through the WHATWG supersets), or None when unknown."""
    name = (label or "").strip().strip("\"'").lower()
    if name in _UNKNOWN:
        return None
    if name in _SUPERSETS:
        return _SUPERSETS[name]
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def no_surrogates(text: str) -> str:
    """The text with any lone surrogate (which no database or template can encode) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def decode(data: bytes, declared: str | None = None) -> tuple[str, Decision]:
    """Read ``data`` labelled ``declared``; never raises, never returns a surrogate."""
    label = (declared or "").strip().strip("\"'").lower()
    codec = codec_for(label)
    if codec in (None, "utf-8", "cp1252", "ascii"):
        fast = _plain(data, label, codec)
        if fast is not None:
            return fast
    if codec is not None:
        text = _strict(data, codec)
        if text is not None:
            return no_surrogates(text), Decision(label, codec, "declared" if codec == label else "superset")
    if codec in (None, "utf-8") and _mostly_utf8(data):  # UTF-8 with a few broken sequences is still UTF-8
        return no_surrogates(data.decode("utf-8", "replace")), Decision(label, "utf-8", "replaced")
    return _guess(data, label)


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _mostly_utf8(data: bytes) -> bool:
    """Most 8-bit bytes form valid UTF-8 sequences: a few broken ones do not make it another charset."""
    valid = sum(len(m) for m in _UTF8_SEQUENCE.findall(data[:MAX_DETECT]))
    high = sum(1 for b in data[:MAX_DETECT] if b >= 0x80)
    return valid > 0 and valid >= 2 * (high - valid)


def _plain(data: bytes, label: str, codec: str | None) -> tuple[str, Decision] | None:
    """ASCII, UTF-8 and Latin labels: strict UTF-8 first (mislabelled UTF-8 is the commonest error)."""
    if data.isascii() and (codec == "utf-8" or b"\x1b" not in data):
        return data.decode("ascii"), Decision(label, codec or "ascii", "declared" if codec else "utf-8")
    if codec in (None, "utf-8", "cp1252"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return no_surrogates(text), Decision(label, "utf-8", "declared" if codec == "utf-8" else "utf-8")
    if codec == "cp1252":
        return _windows_1252(data), Decision(label, "cp1252", "superset" if label != "windows-1252" else "declared")
    return None


_C1_UNDEFINED = (0x81, 0x8D, 0x8F, 0x90, 0x9D)  # the bytes Python's cp1252 codec leaves undefined
# windows-1252 differs from ISO-8859-1 only in 0x80-0x9F: read as Latin-1, those characters are moved.
_FROM_LATIN1 = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in _C1_UNDEFINED}


def _windows_1252(data: bytes) -> str:
    """windows-1252 as WHATWG defines it: the five bytes Python's codec leaves undefined are C1 controls.

    With one of those five, the text is read as Latin-1 and translated: two passes over the text,
    never one object per byte.
    """
    if not re.search(rb"[\x81\x8d\x8f\x90\x9d]", data):
        return data.decode("cp1252", "strict")
    return data.decode("latin-1").translate(_FROM_LATIN1)


def _strict(data: bytes, codec: str) -> str | None:
    if codec == "iso-2022-jp":
        return _iso2022jp(data)
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError, ValueError):
        return None


def _guess(data: bytes, label: str) -> tuple[str, Decision]:
    """No usable label: the detector's reading, else UTF-8 with replacement characters."""
    try:
        from charset_normalizer import from_bytes

        results = from_bytes(data[:MAX_DETECT])
        best = results.best()
        for match in results if best is not None and best.encoding != "cp1252" else ():
            # a tie between Latin code pages: windows-1252, as browsers read unlabelled Western text
            if (
                best is not None
                and match.encoding == "cp1252"
                and match.chaos <= best.chaos + 0.01
                and match.coherence >= best.coherence
            ):
                best = match
    except Exception:  # the detector is a help, not a requirement
        best = None
    if best is not None and best.encoding:
        codec = codec_for(best.encoding) or best.encoding
        text = _strict(data, codec)
        if text is None:
            text = data.decode(codec, "replace")
        return no_surrogates(text), Decision(label, codec, "detected")
    return no_surrogates(data.decode("utf-8", "replace")), Decision(label, "utf-8", "replaced")


_ISO2022 = re.compile(rb"\x1b(\$[@B]|\$\(D|\([BJI])")


def _iso2022jp(data: bytes) -> str | None:
    """ISO-2022-JP with the CP932 extensions (NEC and IBM rows: circled numbers, roman numerals …).

    Each JIS X 0208 pair is moved to its Shift_JIS position and the whole read as CP932, which
    holds JIS X 0208 plus those rows; half-width katakana (``ESC ( I``) moves to its single byte.
    """
    try:
        return data.decode("iso2022_jp_2")
    except UnicodeDecodeError:
        pass
    out = bytearray()
    mode = b"(B"
    pos = 0
    for match in [*_ISO2022.finditer(data), None]:
        end = match.start() if match else len(data)
        chunk = data[pos:end]
        if mode in (b"$@", b"$B"):
            out += _jis_to_sjis(chunk)
        elif mode == b"(I":
            out += bytes(b + 0x80 if 0x21 <= b <= 0x5F else b for b in chunk)
        else:
            out += chunk
        if match:
            mode, pos = match.group(1), match.end()
    try:
        return out.decode("cp932")
    except UnicodeDecodeError:
        return None


def _jis_to_sjis(chunk: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(chunk) - 1, 2):
        j1, j2 = chunk[i], chunk[i + 1]
        if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
            out += bytes((j1, j2))
            continue
        s1 = ((j1 - 0x21) >> 1) + 0x81
        if s1 > 0x9F:
            s1 += 0x40
        s2 = (j2 + 0x1F + (1 if j2 >= 0x60 else 0)) if j1 & 1 else j2 + 0x7E
        out += bytes((s1, s2))
    if len(chunk) % 2:
        out += chunk[-1:]
    return bytes(out)


def header_bytes_text(value: str, hint: str | None = None) -> str:
    """A header the stdlib read with 8-bit bytes as surrogate escapes: those bytes read properly.

    UTF-8 first (RFC 6532), then the charset of the mail's body (old clients wrote headers in it),
    then the detector.
    """
    if not _SURROGATE.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape") if _escapes_only(value) else None
    if data is None:
        return no_surrogates(value)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = codec_for(hint)
    if codec and codec not in ("utf-8", "cp1252"):
        text = _strict(data, codec)
        if text is not None:
            return no_surrogates(text)
    return decode(data, None)[0] if len(data) >= 8 else decode(data, hint)[0]


def _escapes_only(value: str) -> bool:
    """True when every surrogate is a surrogateescape of one byte (U+DC80..U+DCFF)."""
    return not re.search("[\ud800-\udc7f\udd00-\udfff]", value)
