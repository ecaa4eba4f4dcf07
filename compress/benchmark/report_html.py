"""A self-contained HTML page of a report, rendered from its Markdown (one source of truth).

Only the Markdown that `render_markdown` writes is understood: headings,
tables, bullet lists, paragraphs and `code`. The plot is inlined as a data
URI, so the page can be uploaded as a single CI artifact.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:.3em .6em;text-align:right}td:first-child,th:first-child{text-align:left}"
    "th{background:#f4f4f4}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}"
)


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(markdown: str) -> str:
    """The body HTML of the report's Markdown."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            head, body = rows[0], [r for r in rows[1:] if not set("".join(r)) <= set("-: ")]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            for row in body:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
            out.append("</table>")
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def render_html(markdown: str, plot: Path | None, title: str = "compress report") -> str:
    """The whole page: the report's Markdown as HTML, then the plot (inlined)."""
    image = ""
    if plot is not None and plot.is_file():
        data = base64.b64encode(plot.read_bytes()).decode()
        image = f'<img alt="accuracy against latency" src="data:image/png;base64,{data}">'
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>\n{markdown_to_html(markdown)}\n{image}\n"
        "</body></html>\n"
    )
