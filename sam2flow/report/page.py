"""report.html: one self-contained page (images inline) with the run's key figures, charts and tables."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape
from pathlib import Path

from sam2flow.report.stats import Dwell

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}h1{font-size:1.5rem;margin-bottom:.2rem}
h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:left}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;height:auto;
border:1px solid #eee}.warn{background:#fff3cd;border:1px solid #e0b000;padding:.6rem 1rem;border-radius:4px}
.muted{color:#777}.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;vertical-align:middle;
margin-right:.3em}
"""


def data_uri(path: Path) -> str:
    """The image inline, so the page needs no other file."""
    kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[bool] | None = None) -> str:
    """An HTML table; cells are escaped (``numeric`` right-aligns columns)."""
    num = list(numeric or [False] * len(header))
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if num[i] else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(path: Path | None, alt: str) -> str:
    """An inline image, or a note when there is none."""
    if path is None:
        return f"<p class=muted>No {escape(alt.lower())}.</p>"
    return f'<p><img src="{data_uri(path)}" alt="{escape(alt)}"></p>'


def dwell_table(rows: Sequence[Dwell]) -> str:
    """Per (track, zone): entries, total time and longest stay."""
    return table(
        ["track", "zone", "entries", "total (s)", "longest stay (s)"],
        [[d.track_id, escape(d.zone), d.entries, f"{d.total_seconds:.2f}", f"{d.longest_seconds:.2f}"] for d in rows],
        [True, False, True, True, True],
    )


def page(title: str, warning: str | None, sections: Sequence[tuple[str, str]]) -> str:
    """The whole page: a title, an optional warning banner, then (heading, HTML) sections."""
    banner = f'<p class="warn">{escape(warning)}</p>' if warning else ""
    body = "".join(f"<h2>{escape(h)}</h2>\n{html}\n" for h, html in sections)
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{escape(title)}</title>"
        f"<link rel=icon href='data:,'><style>{STYLE}</style></head>\n<body><h1>{escape(title)}</h1>{banner}\n{body}"
        "</body></html>\n"
    )
