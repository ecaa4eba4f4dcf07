"""A report as one self-contained HTML page, read at a glance and rendered from its Markdown.

The page opens with its title (the recipe), a headline (what each deployable
file achieved against the original) and the run's facts; then the plot, the
report's first Markdown table in full (its key columns first, the others
scrolled sideways with the first column kept in view), and the rest of the
Markdown. Figures are never recomputed here: the table's cells are the
Markdown's, and the headline's come formatted from the report. The plot is
inlined as a data URI and the CSS is inline, so the page is a single CI artifact.

    >>> page = Page(title="tiny: compress report", markdown="| stage | size |\\n|---|---|")
    >>> render_page(page).startswith("<!doctype html>")
    True
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

STYLE = (
    "*{box-sizing:border-box}"
    "body{font-family:system-ui,sans-serif;margin:1em auto;max-width:80em;padding:0 1em;"
    "color:#222;line-height:1.4}"
    "h1{font-size:1.5em;margin:.2em 0 .5em;overflow-wrap:anywhere}"
    "h2{font-size:1.2em;margin:1.2em 0 .4em}"
    "p,li,dd,dt,figcaption{overflow-wrap:anywhere}"
    "#headline{display:flex;flex-wrap:wrap;gap:.8em;margin:0 0 .8em}"
    ".file{flex:1 1 18em;min-width:0;border:1px solid #bbb;border-radius:6px;"
    "padding:.5em .8em;background:#f7f9fc}"
    ".file h2{font-size:1em;margin:0}.file .name{font-size:.85em;color:#555;margin:0 0 .3em;"
    "overflow-wrap:anywhere}"
    ".figures{display:flex;flex-wrap:wrap;gap:.3em 1.4em}"
    ".figure b{display:block;font-size:1.5em;line-height:1.2}"
    ".figure span{font-size:.8em;color:#444}"
    ".note{font-size:.85em;color:#555;margin:.2em 0 .8em}"
    "#facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.1em 1em;"
    "margin:0 0 1em;font-size:.9em}#facts dt{font-weight:600}#facts dd{margin:0}"
    ".warning{background:#fff4e5;border-left:4px solid #e69500;padding:.3em .6em}"
    ".table-scroll{overflow-x:auto;max-width:100%;border:1px solid #ddd}"
    "table{border-collapse:separate;border-spacing:0;margin:0}"
    "td,th{border-bottom:1px solid #ddd;border-right:1px solid #eee;padding:.3em .6em;"
    "text-align:right;white-space:nowrap}"
    "td:first-child,th:first-child{text-align:left;position:sticky;left:0;z-index:1;"
    "background:#fff;border-right:2px solid #bbb;white-space:normal;min-width:10em}"
    "th{background:#f4f4f4}th:first-child{background:#f4f4f4}"
    ".more{color:#444}.first-more{border-left:3px double #bbb}"
    ".sub{display:block;font-size:.85em;color:#555}"
    "img{max-width:100%;height:auto}#plot img{width:46em}figure{margin:0 0 1em}"
    "code{background:#f4f4f4;padding:0 .2em;overflow-wrap:anywhere}"
)


@dataclass(frozen=True)
class Figure:
    """One headline figure: `value` ("9.18×") and what it is ("smaller")."""

    value: str
    caption: str


@dataclass(frozen=True)
class HeadlineItem:
    """A deployable file: its kind ("INT8 CPU file"), name (step:variant, file) and figures."""

    title: str
    name: str
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class Page:
    """What a report page shows; `markdown` is the report's own (its first table is shown
    in full, `key_columns` first; `joined` = (column, column shown under it in one cell))."""

    title: str
    markdown: str
    headline: tuple[HeadlineItem, ...] = ()
    headline_note: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    key_columns: tuple[str, ...] = ()
    joined: tuple[str, str] | None = None
    table_title: str = "Every stage"
    plot: Path | None = None
    plot_alt: str = "accuracy against latency"
    alerts: tuple[str, ...] = ()  # warnings shown first, under the title


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_rule(row: list[str]) -> bool:
    return set("".join(row)) <= set("-: ")


def _table_rows(lines: list[str]) -> list[list[str]]:
    """Header and body rows of a Markdown table (the |---| rule dropped)."""
    rows = [_cells(line) for line in lines]
    return [rows[0], *(r for r in rows[1:] if not _is_rule(r))]


def markdown_to_html(markdown: str) -> str:
    """The body HTML of a report's Markdown: headings, tables, bullet lists, paragraphs,
    `code` and **bold** (a paragraph that opens with **Warning:** is marked as one)."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_table_html(_table_rows(block)))
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif line.strip():
            warning = ' class="warning"' if line.startswith("**Warning:**") else ""
            out.append(f"<p{warning}>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _split(markdown: str) -> tuple[str, list[str], str]:
    """(Markdown before the first table, its lines, Markdown after it); a leading
    level-1 heading is dropped (the page has its own title)."""
    lines = markdown.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start]), lines[start:end], "\n".join(lines[end:])


def _order(header: list[str], key_columns: tuple[str, ...]) -> tuple[list[int], int]:
    """Column indices with the first column and the key columns first (a name listed twice
    takes its next occurrence), and how many lead; all lead when there are no key columns."""
    taken = [0]
    for name in key_columns:
        at = next((i for i, h in enumerate(header) if h == name and i not in taken), None)
        if at is not None:
            taken.append(at)
    rest = [i for i in range(len(header)) if i not in taken]
    return taken + rest, len(taken) if key_columns else len(header)


def _table_html(
    rows: list[list[str]], key_columns: tuple[str, ...] = (), joined: tuple[str, str] | None = None
) -> str:
    """A table in a sideways-scrolling box: its first column stays in view, key columns next;
    the `joined` pair's second column is shown under the first column's text."""
    header, body = rows[0], rows[1:]
    under = header.index(joined[1]) if joined and joined[1] in header else None
    order, keys = _order(header, key_columns)
    order = [i for i in order if i != under]

    def cell(tag: str, row: list[str], position: int, index: int) -> str:
        text = _inline(row[index]) if index < len(row) else ""
        if position == 0 and under is not None and under < len(row) and row[under]:
            text += f'<span class="sub">{_inline(row[under])}</span>'
        classes = []
        if position >= keys:
            classes.append("more")
        if position == keys:
            classes.append("first-more")
        attr = f' class="{" ".join(classes)}"' if classes else ""
        return f"<{tag}{attr}>{text}</{tag}>"

    head = "".join(cell("th", header, p, i) for p, i in enumerate(order))
    lines = [f'<div class="table-scroll" tabindex="0"><table><tr>{head}</tr>']
    for row in body:
        lines.append("<tr>" + "".join(cell("td", row, p, i) for p, i in enumerate(order)) + "</tr>")
    lines.append("</table></div>")
    return "\n".join(lines)


def _headline_html(page: Page) -> str:
    if not page.headline:
        return ""
    items = []
    for item in page.headline:
        figures = "".join(
            f'<div class="figure"><b>{html.escape(f.value)}</b><span>{html.escape(f.caption)}'
            "</span></div>"
            for f in item.figures
        )
        items.append(
            f'<article class="file"><h2>{html.escape(item.title)}</h2>'
            f'<p class="name">{_inline(item.name)}</p><div class="figures">{figures}</div>'
            "</article>"
        )
    note = f'<p class="note">{_inline(page.headline_note)}</p>' if page.headline_note else ""
    return f'<section id="headline">{"".join(items)}</section>{note}'


def _facts_html(facts: tuple[tuple[str, str], ...]) -> str:
    if not facts:
        return ""
    pairs = "".join(f"<dt>{html.escape(k)}</dt><dd>{_inline(v)}</dd>" for k, v in facts)
    return f'<dl id="facts">{pairs}</dl>'


def _image_html(plot: Path | None, alt: str) -> str:
    if plot is None or not plot.is_file():
        return ""
    data = base64.b64encode(plot.read_bytes()).decode()
    image = f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
    return f'<figure id="plot">{image}</figure>'


def render_page(page: Page) -> str:
    """The whole page: title, headline, facts, the report's notes, plot, table, the rest."""
    before, table, after = _split(page.markdown)
    parts = [
        f'<h1 id="title">{html.escape(page.title)}</h1>',
        *(f'<p class="warning"><b>Warning:</b> {_inline(text)}</p>' for text in page.alerts),
        _headline_html(page),
        _facts_html(page.facts),
        markdown_to_html(before),
        _image_html(page.plot, page.plot_alt),
    ]
    if table:
        rows = _table_rows(table)
        parts.append(f'<h2 id="table-title">{html.escape(page.table_title)}</h2>')
        if _order(rows[0], page.key_columns)[1] < len(rows[0]):
            parts.append(
                '<p class="note">Key columns first; the table scrolls sideways for the '
                "others, its first column kept in view.</p>"
            )
        parts.append(_table_html(rows, page.key_columns, page.joined))
    parts.append(markdown_to_html(after))
    body = "\n".join(p for p in parts if p)
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(page.title)}</title><style>{STYLE}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )


def render_html(markdown: str, plot: Path | None, title: str = "compress report") -> str:
    """A page of any report's Markdown, without a headline: the plot, then the Markdown."""
    return render_page(Page(title=title, markdown=markdown, plot=plot))
