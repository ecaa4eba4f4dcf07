"""The search's report.html: the best model's and the hand-written recipe's headline, the
search's facts, the plot, the front table and how it was measured (from report.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.benchmark.report_html import Figure, HeadlineItem, Page, render_page
from compress.benchmark.report_page import cpu_fact

KEY_COLUMNS = ("model", "test acc", "vs original", "faster", "smaller", "size MB")


def _item(title: str, row: dict[str, Any], original: dict[str, Any], batch: int) -> HeadlineItem:
    values = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row["values"].items())
    delta = 100 * (row["test_accuracy"] - original["test_accuracy"])
    figures = (
        Figure(f"{row['smaller']:.2f}×", f"smaller ({row['size_bytes'] / 1e6:.2f} MB)"),
        Figure(f"{row['speedup']:.2f}×", f"faster at batch {batch} ({row['p50_ms']:.2f} ms)"),
        Figure(f"{delta:+.2f} pt", f"test accuracy: {row['test_accuracy']:.2%}"),
    )
    return HeadlineItem(title, row["label"] + (f": {values}" if values else ""), figures)


def search_page(pareto: dict[str, Any], markdown: str, plot: Path | None) -> str:
    """report.html of a search, from pareto.json's figures and report.md."""
    original, batch = pareto["original"], pareto["batch_size"]
    rows = pareto["rows"]
    best = next((r for r in rows if r["label"] == pareto.get("best")), None)
    hand = next((r for r in rows if r["label"] == "hand-written"), None)
    headline = []
    if best is not None:
        headline.append(_item("Best within the budget", best, original, batch))
    if hand is not None and hand is not best:
        headline.append(_item("Hand-written recipe", hand, original, batch))
    counts, machine = pareto["trials"], pareto.get("machine") or {}
    facts = (
        ("Recipe", f"{Path(str(pareto['recipe'])).stem} (`{pareto['recipe']}`)"),
        (
            "Search",
            f"{counts['total']} trials, objective {pareto['objective']}, at most "
            f"{pareto['max_drop']:g} points of validation accuracy below the original",
        ),
        ("Model", f"`{pareto['stage']}` scored; original: {original['test_accuracy']:.2%}"),
        (
            "Data",
            f"{pareto['n_validation']} validation examples (trials), "
            f"{original['n_test']} test examples (this table)",
        ),
        ("CPU", cpu_fact(machine)),
        *((("Date", str(pareto["date"])),) if pareto.get("date") else ()),
        ("compress", str(machine.get("compress") or "—")),
    )
    page = Page(
        title=f"{Path(str(pareto['recipe'])).stem}: compress search",
        markdown=markdown,
        headline=tuple(headline),
        headline_note="Against the original, measured on the test split in the same run."
        if headline
        else "No trial kept the validation accuracy within the budget.",
        facts=facts,
        key_columns=KEY_COLUMNS,
        table_title="The front on the test split",
        plot=plot,
        plot_alt="test accuracy against latency",
    )
    return render_page(page)
