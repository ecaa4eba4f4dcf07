"""report.png: accuracy against single-batch latency, one labelled point per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_report(report: dict[str, Any], path: Path) -> bool:
    """Draw the plot into `path`; False (and nothing written) without matplotlib.

    Point area grows with model size; the original is drawn in red. Labels
    are moved apart (with a leader line) where stages sit close together.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    drawn = figure(report)
    if drawn is None:
        return False
    drawn[0].savefig(path, dpi=120)
    return True


def figure(report: dict[str, Any]) -> tuple[Any, list[Any]] | None:
    """The figure and its stage labels, laid out; None when no stage has both figures."""
    from matplotlib.figure import Figure

    sizes = report.get("method", {}).get("batch_sizes") or [1]
    key = f"b{min(sizes)}"
    points = []
    for i, stage in enumerate(report["stages"]):
        latency = stage.get("latency", {}).get(key, {}).get("p50_ms")
        accuracy = stage.get("accuracy")
        if isinstance(latency, int | float) and isinstance(accuracy, int | float):
            label = f"{stage.get('stage', '?')}"
            label += f":{stage['variant']}" if stage.get("variant") else ""
            if i == 0 and "original" not in label:
                label += " (original)"
            points.append(
                (float(latency), 100.0 * accuracy, stage.get("size_bytes") or 0, label, i)
            )
    if not points:
        return None
    largest = max(p[2] for p in points) or 1
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    labels, markers = [], []
    for latency, accuracy, size, label, index in points:
        original = index == 0
        marker = ax.scatter(
            [latency],
            [accuracy],
            s=40 + 460 * size / largest,
            color="tab:red" if original else "tab:blue",
            alpha=0.85 if original else 0.6,
            edgecolors="black",
            linewidths=1.5 if original else 0.5,
            zorder=3 if original else 2,
        )
        markers.append(marker)
        labels.append(
            ax.annotate(
                label,
                (latency, accuracy),
                textcoords="offset points",
                xytext=OFFSETS[0],
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "0.55", "linewidth": 0.6},
            )
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
    _separate(fig, labels, markers)
    return fig, labels


# Where a label may sit, in points from its marker: right of it, left of it, then further
# up and down on either side.
OFFSETS = [(dx, dy) for dy in (6, -14, 20, -28, 34, -42, 48, -56) for dx in (6, -6)]


def _marker_box(fig: Any, marker: Any) -> Any:
    """The display box of a one-point scatter marker (its collection reports no extent)."""
    from matplotlib.transforms import Bbox

    (x, y), size = marker.get_offsets()[0], float(marker.get_sizes()[0])
    cx, cy = marker.axes.transData.transform((x, y))
    radius = (size**0.5) / 2 * fig.dpi / 72  # marker size is an area in points squared
    return Bbox([[cx - radius, cy - radius], [cx + radius, cy + radius]])


def text_box(label: Any, renderer: Any) -> Any:
    """The display box of a label's text alone (an annotation's own box includes its line)."""
    from matplotlib.text import Text

    return Text.get_window_extent(label, renderer)


def _text_box(label: Any, renderer: Any) -> Any:
    return text_box(label, renderer).padded(3)


def _overlap(box: Any, others: list[Any]) -> float:
    """Area of `box` covered by `others` (in square pixels, counted per other box)."""
    total = 0.0
    for other in others:
        width = min(box.x1, other.x1) - max(box.x0, other.x0)
        height = min(box.y1, other.y1) - max(box.y0, other.y0)
        total += max(0.0, width) * max(0.0, height)
    return total


def _separate(fig: Any, labels: list[Any], markers: list[Any]) -> None:
    """Put each label where it stays inside the axes, overlaps no label placed before it and
    covers no other marker; where no offset manages all three, the one that does best (in
    that order)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # settle the layout, so the extents are the final ones
    dots = [_marker_box(fig, marker) for marker in markers]
    placed: list[Any] = []
    for index, label in enumerate(labels):
        frame = label.axes.get_window_extent(renderer)
        own = dots[index]  # markers on top of this one cannot be avoided, only labels can
        others = [d for j, d in enumerate(dots) if j != index and not d.overlaps(own)]
        best: tuple[float, float, float] | None = None
        choice = OFFSETS[0]
        for dx, dy in OFFSETS:
            label.xyann = (dx, dy)
            label.set_horizontalalignment("left" if dx > 0 else "right")
            box = _text_box(label, renderer)
            outside = box.width * box.height - _overlap(box, [frame])
            score = (outside, _overlap(box, placed), _overlap(box, others))
            if best is None or score < best:
                best, choice = score, (dx, dy)
            if score == (0.0, 0.0, 0.0):
                break
        label.xyann = choice
        label.set_horizontalalignment("left" if choice[0] > 0 else "right")
        placed.append(_text_box(label, renderer))
