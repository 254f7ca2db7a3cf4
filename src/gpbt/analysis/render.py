"""Report pages: content as blocks, rendered once to Markdown and once to self-contained HTML.

A section's content is a list of blocks, `("text", str)`, `("bullets", [str])` or
`("table", DataFrame)`, so a report's `.md` and `.html` always say the same thing. Text may use
the little Markdown `inline` understands (**bold**, `code`). Figures are embedded as base64
(PNG plots, GIF animations) and the page checks on load that every one decoded, so a browser
test sees a broken image as a console error. Used by the experiment report
(`gpbt.analysis.report`) and the benchmark report (`gpbt.bench.report`).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

Block = tuple[str, Any]

MIME = {".png": "image/png", ".gif": "image/gif"}


def fmt(v) -> str:
    if isinstance(v, float | np.floating):
        if not math.isfinite(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3g}"
    return str(v)


def _cells(df: pd.DataFrame) -> list[list[str]]:
    # column by column: a row of mixed types (iterrows) would turn an int column into floats
    columns = [[fmt(v) for v in df[c].tolist()] for c in df.columns]
    return [list(row) for row in zip(*columns, strict=True)]


def md_table(df: pd.DataFrame) -> str:
    if df is None or not len(df):
        return "_(no data)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in _cells(df):
        lines.append("| " + " | ".join(v.replace("|", "/") for v in row) + " |")
    return "\n".join(lines) + "\n"


def html_table(df: pd.DataFrame) -> str:
    if df is None or not len(df):
        return "<p><em>no data</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in _cells(df)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def blocks_md(blocks: list[Block]) -> str:
    out = []
    for kind, value in blocks:
        if kind == "table":
            out.append(md_table(value))
        elif kind == "bullets":
            out.append("\n".join(f"- {x}" for x in value) + "\n")
        else:
            out.append(value + "\n")
    return "\n".join(out)


def blocks_html(blocks: list[Block]) -> str:
    out = []
    for kind, value in blocks:
        if kind == "table":
            out.append(html_table(value))
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in value) + "</ul>")
        else:
            out.append(f"<p>{inline(value)}</p>")
    return "".join(out)


def inline(text: str) -> str:
    """The tiny bit of Markdown the blocks use: **bold** and `code`."""
    out = html.escape(text)
    parts = out.split("**")
    out = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def figure_html(path: Path, caption: str) -> str:
    """A file (PNG or GIF) embedded as base64, with its caption and file name."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    mime = MIME[Path(path).suffix.lower()]
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:{mime};base64,{data}">'
        f"<figcaption>{html.escape(caption)} ({Path(path).name})</figcaption></figure>"
    )


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f3f3f3} img{max-width:100%} figure{margin:1em 0}
figcaption{font-size:12px;color:#555} nav a{margin-right:.8em;font-size:13px}
section{border-top:1px solid #ddd;margin-top:1.5em}
"""

# Checks in the browser that every embedded figure decoded; a broken one is a console error,
# which the reports' browser tests catch.
IMAGE_CHECK_JS = """
window.addEventListener('load', function () {
  var bad = Array.prototype.filter.call(document.images, function (im) {
    return !(im.complete && im.naturalWidth > 0);
  });
  document.body.setAttribute('data-images', bad.length ? 'broken' : 'ok');
  if (bad.length) { console.error('gpbt report: ' + bad.length + ' plots did not load'); }
});
"""


def html_page(title: str, sections: list[tuple[str, str, str]]) -> str:
    """A whole self-contained page: `sections` are (id, heading, inner HTML)."""
    nav = "".join(f'<a href="#{key}">{html.escape(heading)}</a>' for key, heading, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{html.escape(heading)}</h2>{inner}</section>'
        for key, heading, inner in sections
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"<style>{CSS}</style><script>{IMAGE_CHECK_JS}</script></head><body>"
        f"<h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>"
    )
