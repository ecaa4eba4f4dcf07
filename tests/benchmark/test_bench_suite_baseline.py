"""`compress bench run --baseline`: one baseline for every run of a suite, over each run's own."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from compress.benchmark.compare import Thresholds
from compress.cli import main
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv

RECIPE = """\
name: tiny
model: {{source: {model}}}
data: {{source: data.csv, validation_size: 16, test_size: 32, max_length: 32}}
benchmark: {{batch_sizes: [1], sequence_length: 16, warmup: 1, repetitions: 5, plot: false}}
"""


def test_the_baseline_option_holds_every_run_to_that_report(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--baseline (a report or its folder) replaces the suite's own baselines: a suite whose
    own baseline fails passes against a --baseline equal to the run, and a --baseline 10
    points better fails with exit 3 naming the run, stage and figure."""
    write_labelled_csv(tmp_path, 96, 3)
    (tmp_path / "tiny.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    out = tmp_path / "runs"
    run_recipe(load_recipe(tmp_path / "tiny.yaml"), out / "tiny", progress=False)
    report = json.loads((out / "tiny" / "report.json").read_text())
    (stage,) = report["stages"]  # no passes: the original alone, so no latency ratio to gate
    same = tmp_path / "same"
    same.mkdir()
    (same / "report.json").write_text(json.dumps(report))
    stage["accuracy"] += 0.10
    (tmp_path / "better.json").write_text(json.dumps(report))
    checks = tmp_path / "checks.json"

    def bench_run(own: str, baseline: Path, *flags: str) -> int:
        (tmp_path / "suite.yaml").write_text(f"runs:\n  - recipe: tiny.yaml\n    baseline: {own}\n")
        suite = str(tmp_path / "suite.yaml")
        args = ["bench", "run", suite, "--baseline", str(baseline), "--out", str(out)]
        return main([*args, "--json", str(checks), *flags])

    assert bench_run("better.json", same) == 0
    printed = capsys.readouterr()
    assert printed.out.rstrip().endswith("2 passed, 0 failed")
    assert "no baseline" not in printed.out + printed.err
    result = json.loads(checks.read_text())
    assert result["passed"] is True
    assert result["thresholds"] == asdict(Thresholds())  # the suite sets no budgets
    name = f"tiny/{stage['stage']}:{stage['variant']}"
    assert {(c["stage"], c["metric"]) for c in result["checks"]} == {
        (name, "accuracy"),
        (name, "size_bytes"),
    }
    assert bench_run("same/report.json", tmp_path / "better.json", "--quiet") == 3
    printed = capsys.readouterr()
    assert printed.err == f"error: 1 check(s) regressed: {name} accuracy\n"
    (failed,) = [c for c in json.loads(checks.read_text())["checks"] if not c["passed"]]
    assert failed["baseline"] == pytest.approx(failed["current"] + 0.10)
