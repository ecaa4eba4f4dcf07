"""report.png: every stage's label readable, even where stages sit on top of each other."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from compress.benchmark.plot import figure, plot_report, text_box

pytest.importorskip("matplotlib")


def _stage(name: str, variant: str, p50: float, accuracy: float) -> dict[str, object]:
    latency = {"b1": {"p50_ms": p50}}
    return {"stage": name, "variant": variant, "latency": latency, "accuracy": accuracy}


REPORT = {
    "method": {"batch_sizes": [1, 8], "sequence_length": 64, "threads": 2},
    "stages": [
        _stage("fine_tune", "fp32", 8.5, 0.81),
        _stage("distill", "fp32", 4.4, 0.811),
        _stage("prune_vocab", "fp32", 4.4, 0.8075),
        _stage("export_onnx", "fp32", 3.0, 0.8075),  # these two coincide
        _stage("export_onnx", "fp32-ort", 3.0, 0.8075),
        _stage("quantize", "int8-dynamic", 1.6, 0.8065),
        _stage("quantize", "int8-qdq", 8.0, 0.772),
    ],
}


def test_labels_do_not_overlap() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    drawn = figure(REPORT)
    assert drawn is not None
    fig, labels = drawn
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    boxes = {label.get_text(): text_box(label, renderer) for label in labels}
    assert len(boxes) == 7 and "fine_tune:fp32 (original)" in boxes
    frame = labels[0].axes.get_window_extent(renderer)
    for (a, box_a), (b, box_b) in combinations(boxes.items(), 2):
        assert not box_a.overlaps(box_b), f"{a} overlaps {b}"
    for name, box in boxes.items():
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1, f"{name} leaves the plot"


def test_no_point_no_plot(tmp_path: Path) -> None:
    empty = {"method": {}, "stages": [{"stage": "x", "accuracy": 0.5}]}
    assert not plot_report(empty, tmp_path / "p.png") and not (tmp_path / "p.png").exists()
    assert plot_report(REPORT, tmp_path / "p.png") and (tmp_path / "p.png").stat().st_size > 0
