"""A model that learned nothing is called out, not reported as a lossless compression."""

from __future__ import annotations

import numpy as np
import pytest

from compress.benchmark.report import build_report, render_markdown, render_terminal
from compress.benchmark.sanity import majority_baseline, warnings


def test_majority_baseline() -> None:
    labels = np.array([2, 2, 0, 2, 1, 2, 0, 2])
    base = majority_baseline(labels, ["neg", "mixed", "pos"])
    assert base["label"] == "pos" and base["accuracy"] == pytest.approx(5 / 8)
    assert base["macro_f1"] == pytest.approx((0 + 0 + 2 * 5 / (2 * 5 + 3)) / 3)
    assert base["rows"] == 8
    with pytest.raises(ValueError):
        majority_baseline(np.array([], dtype=np.int64), ["a"])


def _stage(name: str, accuracy: float) -> dict[str, object]:
    return {"stage": name, "variant": "fp32", "accuracy": accuracy, "latency": {}}


MAJORITY = {"label": "pos", "accuracy": 0.648, "macro_f1": 0.26, "rows": 250}


def test_an_original_no_better_than_the_majority_is_flagged_with_what_to_do() -> None:
    stages = [_stage("fine_tune", 0.648), _stage("distill", 0.648), _stage("quantize", 0.70)]
    flagged = warnings(stages, MAJORITY)
    assert len(flagged) == 2
    assert flagged[0].startswith("the original (fine_tune) scores 64.80%, no better than always")
    assert "'pos'" in flagged[0] and "fine_tune: epochs, lr" in flagged[0]
    assert flagged[1].startswith("distill:fp32 scores 64.80%")
    # a point above the majority is learning; without a baseline nothing is said
    assert warnings([_stage("fine_tune", 0.659)], MAJORITY) == []
    assert warnings(stages, None) == []


def test_the_report_carries_the_baseline_and_its_warnings() -> None:
    method = {"batch_sizes": [1], "majority_class": MAJORITY}
    report = build_report([_stage("fine_tune", 0.648), _stage("distill", 0.81)], method)
    assert len(report["warnings"]) == 1
    markdown = render_markdown(report)
    assert markdown.splitlines()[2].startswith("**Warning:** the original (fine_tune)")
    assert "Always predicting the commonest test label ('pos') scores 64.80%" in markdown
    assert render_terminal(report).splitlines()[-1].startswith("warning: the original")
    healthy = build_report([_stage("fine_tune", 0.81)], method)
    assert "warnings" not in healthy and "Warning" not in render_markdown(healthy)
