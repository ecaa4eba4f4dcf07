"""report.png: accuracy against single-batch latency, one labelled point per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_report(report: dict[str, Any], path: Path) -> bool:
    """Draw the plot into `path`; False (and nothing written) without matplotlib.

    Point area grows with model size; the original is drawn in red.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    sizes = report.get("method", {}).get("batch_sizes") or [1]
    key = f"b{min(sizes)}"
    points = []
    for i, stage in enumerate(report["stages"]):
        latency = stage.get("latency", {}).get(key, {}).get("p50_ms")
        accuracy = stage.get("accuracy")
        if isinstance(latency, int | float) and isinstance(accuracy, int | float):
            label = f"{stage.get('stage', '?')}:{stage.get('variant', '')}"
            if i == 0 and "original" not in label:
                label += " (original)"
            points.append(
                (float(latency), 100.0 * accuracy, stage.get("size_bytes") or 0, label, i)
            )
    if not points:
        return False
    largest = max(p[2] for p in points) or 1
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    for latency, accuracy, size, label, index in points:
        original = index == 0
        ax.scatter(
            [latency],
            [accuracy],
            s=40 + 460 * size / largest,
            color="tab:red" if original else "tab:blue",
            alpha=0.85 if original else 0.6,
            edgecolors="black",
            linewidths=1.5 if original else 0.5,
            zorder=3 if original else 2,
        )
        ax.annotate(
            label, (latency, accuracy), textcoords="offset points", xytext=(6, 6), fontsize=8
        )
    latencies = [p[0] for p in points]
    if min(latencies) > 0 and max(latencies) / min(latencies) > 10:
        ax.set_xscale("log")
    method = report.get("method", {})
    ax.set_xlabel(f"p50 latency, batch {min(sizes)} (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"Accuracy vs latency (seq {method.get('sequence_length', '?')}, "
        f"{method.get('threads', '?')} threads; point area ~ model size)",
        fontsize=10,
    )
    ax.margins(x=0.2, y=0.15)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=120)
    return True
