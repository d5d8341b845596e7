"""Parse time of HTML bombs and of a typical HTML mail, as a table.

Each bomb is parsed once through ``mailgate.mail.parse.parse`` (the whole path: the MIME walk,
the bound, nh3, the text version). Run: ``.venv/bin/python bench/html_bombs.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.message import EmailMessage

from mailgate.mail.parse import parse

_ROW = '<tr><td><b>Item</b> <a href="https://shop.example/p/1" title="t">link</a></td><td>2 &amp; 3</td></tr>\n'
TYPICAL = "<html><body><div><p>Hello,</p><table>" + _ROW * 24 + "</table><p>Regards</p></div></body></html>"


def make_mail(html: str) -> bytes:
    """A text/plain + text/html alternative, the way a mail client sends HTML."""
    msg = EmailMessage()
    msg["From"] = "Alice <alice@customer.example>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "HTML"
    msg["Message-ID"] = "<bench@customer.example>"
    msg.set_content("Hello")
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def bombs() -> dict[str, str]:
    """The bombs of issue 11, and each at half size, to show the growth is linear."""
    made: dict[str, str] = {}
    for scale in (0.5, 1.0):
        divs, tags, attrs, bolds = int(60_000 * scale), int(240_000 * scale), int(10_000 * scale), int(10_000 * scale)
        made[f"{divs} nested <div>"] = "<div>" * divs + "deep" + "</div>" * divs
        made[f"{tags} small tags"] = "<i>x</i>" * (tags // 2)
        made[f"{attrs} attributes on one tag"] = "<p " + " ".join(f"a{i}=v" for i in range(attrs)) + ">x</p>"
        made[f"{bolds} nested <b>"] = "<b>" * bolds + "bold"
    return made


def timed(call: Callable[[], object], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    typical = make_mail(TYPICAL)
    print(f"{'mail':<34} {'HTML bytes':>11} {'parse ms':>10}  defects")
    for _ in range(20):
        parse(typical)
    print(f"{'typical HTML mail':<34} {len(TYPICAL):>11} {timed(lambda: parse(typical), 300) * 1000:>10.2f}")
    for name, html in bombs().items():
        raw = make_mail(html)
        seconds = timed(lambda raw=raw: parse(raw), 1)
        notes = [d.split(":")[0] for d in parse(raw).defects if d.startswith("Html")]
        print(f"{name:<34} {len(html):>11} {seconds * 1000:>10.1f}  {','.join(notes)}")


if __name__ == "__main__":
    main()
