"""Suites: validated before anything runs, then each report held to its baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.cli import main
from compress.errors import RecipeError
from compress.run.suite import load_suite
from tests.conftest import write_labelled_csv

RECIPE = """\
name: tiny_suite
model: {{source: {model}}}
data: {{source: data.csv, validation_size: 32, test_size: 32, max_length: 32}}
passes:
  - fine_tune: {{epochs: 1, batch_size: 16}}
  - export_onnx: {{optimize: false}}
benchmark: {{batch_sizes: [1], sequence_length: 16, warmup: 1, repetitions: 5}}
"""


@pytest.fixture()
def suite_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_labelled_csv(tmp_path, 120, 3)
    (tmp_path / "tiny.yaml").write_text(RECIPE.format(model=tiny_model_dir))
    return tmp_path


def _suite(folder: Path, baseline: str | None, budgets: str = "") -> Path:
    path = folder / "suite.yaml"
    run = "  - recipe: tiny.yaml\n" + (f"    baseline: {baseline}\n" if baseline else "")
    # timings of a tiny model on a shared machine are noise: this suite gates accuracy and size
    budgets = budgets or "budgets: {max_latency_regression: 1000}\n"
    path.write_text(budgets + "runs:\n" + run)
    return path


def test_suite_passes_against_its_own_baseline_then_catches_a_regression(
    suite_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = suite_dir / "runs"
    assert main(["bench", "run", str(_suite(suite_dir, None)), "--out", str(out)]) == 0
    report = out / "tiny_suite" / "report.json"
    assert report.is_file() and "no baseline" in capsys.readouterr().err
    baseline = json.loads(report.read_text())
    (suite_dir / "baseline.json").write_text(json.dumps(baseline))
    suite = _suite(suite_dir, "baseline.json")
    junit = suite_dir / "checks.xml"
    args = ["bench", "run", str(suite), "--out", str(out), "--junit", str(junit), "--quiet"]
    assert main(args) == 0  # same seeds, same accuracy and size: every check passes
    assert 'failures="0"' in junit.read_text()
    for stage in baseline["stages"]:
        stage["accuracy"] = stage["accuracy"] + 0.10  # the baseline was 10 points better
    (suite_dir / "baseline.json").write_text(json.dumps(baseline))
    assert main(args) == 3
    text = capsys.readouterr()
    assert "FAIL" in text.out and "tiny_suite/" in text.out and "regressed" in text.err
    assert 'failures="0"' not in junit.read_text()


def test_suite_errors_name_file_line_and_key(
    suite_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Suite errors name the suite file, line and key; a run's bad `set` override is refused
    up front, naming the recipe key, before anything runs."""
    bad = suite_dir / "bad.yaml"
    bad.write_text("runs:\n  - recipe: tiny.yaml\n    baseline: missing.json\n")
    where = r"bad\.yaml:3 runs\[0\]\.baseline: "
    with pytest.raises(RecipeError, match=where + r"baseline .*missing\.json not found"):
        load_suite(bad)
    bad.write_text("runs:\n  - recipe: tiny.yaml\n    budget: 1\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml:3 runs\[0\]\.budget: unknown key"):
        load_suite(bad)
    # quoted: unquoted, `[passes[0]...]` is a YAML error and would prove nothing about `set`
    bad.write_text("runs:\n  - recipe: tiny.yaml\n    set: ['passes[0].fine_tune.epochz=2']\n")
    capsys.readouterr()
    out = suite_dir / "runs"
    assert main(["bench", "run", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {suite_dir / 'tiny.yaml'}:5 passes[0].fine_tune.epochz: unknown option of "
        "'fine_tune' (did you mean 'epochs'?)"
    )
    assert not out.exists()  # the recipe override is checked up front
    bad.write_text("budgets: {max_size_growth: 0.5}\nruns: [{recipe: tiny.yaml}]\n")
    with pytest.raises(RecipeError, match="max_size_growth"):
        load_suite(bad)


def test_the_project_suite_is_valid() -> None:
    suite = load_suite(Path(__file__).resolve().parents[2] / "bench" / "suites" / "flagship.yaml")
    assert suite.name == "flagship" and suite.doc.budgets.max_accuracy_drop == 0.5
