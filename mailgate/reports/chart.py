"""``mailgate report --chart``: daily volume (bars) and median first response (line).

SVG is written by hand (no dependency, readable in any browser); PNG needs
matplotlib, which is optional: without it the command says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT, PAD = 900, 360, 50


def write(path: Path, days: list[dict[str, Any]], title: str) -> None:
    suffix = path.suffix.lower()
    if suffix == ".svg":
        path.write_text(svg(days, title), encoding="utf-8")
    elif suffix == ".png":
        png(path, days, title)
    else:
        raise ValueError(f"--chart: expected a file name ending in .svg or .png, got {path.name!r}")


def svg(days: list[dict[str, Any]], title: str) -> str:
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    n = max(1, len(days))
    top_volume = max([d["opened"] for d in days] + [1])
    top_hours = max([d["first_response_median_h"] or 0 for d in days] + [1])
    step = plot_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{PAD}" y="20" font-size="14">{escape(title)}</text>',
        f'<line x1="{PAD}" y1="{PAD + plot_h}" x2="{PAD + plot_w}" y2="{PAD + plot_h}" stroke="black"/>',
        f'<text x="5" y="{PAD - 8}" fill="#4a7ab5">tickets (max {top_volume})</text>',
        f'<text x="{WIDTH - PAD - 150}" y="{PAD - 8}" fill="#c0392b">first response, median h '
        f"(max {top_hours:g})</text>",
    ]
    points = []
    for i, day in enumerate(days):
        x = PAD + i * step
        bar = plot_h * day["opened"] / top_volume
        parts.append(
            f'<rect class="volume" x="{x + step * 0.1:.1f}" y="{PAD + plot_h - bar:.1f}" '
            f'width="{step * 0.8:.1f}" height="{bar:.1f}" fill="#4a7ab5">'
            f"<title>{day['date']}: {day['opened']} opened</title></rect>"
        )
        if day["first_response_median_h"] is not None:
            y = PAD + plot_h - plot_h * day["first_response_median_h"] / top_hours
            points.append(f"{x + step / 2:.1f},{y:.1f}")
        if len(days) <= 31 or i % max(1, len(days) // 15) == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{PAD + plot_h + 14}" text-anchor="middle">{day["date"][5:]}</text>'
            )
    if points:
        parts.append(
            f'<polyline class="first-response" points="{" ".join(points)}" fill="none" '
            'stroke="#c0392b" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def png(path: Path, days: list[dict[str, Any]], title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise ValueError("--chart FILE.png needs matplotlib (pip install matplotlib); FILE.svg needs nothing") from None
    figure, volume = pyplot.subplots(figsize=(9, 3.6))
    labels = [d["date"][5:] for d in days]
    volume.bar(labels, [d["opened"] for d in days], color="#4a7ab5", label="tickets opened")
    hours = volume.twinx()
    hours.plot(labels, [d["first_response_median_h"] for d in days], color="#c0392b", label="first response, median h")
    volume.set_title(title)
    volume.tick_params(axis="x", labelrotation=60, labelsize=7)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
