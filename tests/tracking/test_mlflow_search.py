"""A real search (two trials on a tiny model) whose recipe logs to a local MLflow store:
one parent run for the search, one child run per trial, read back and compared with
trials.json and pareto.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.search.command import run_search
from tests.conftest import write_labelled_csv

mlflow = pytest.importorskip("mlflow")

LEAN_RECIPE = """\
name: lean
seed: 1
model:
  source: {model}
data:
  source: data.csv
  validation_size: 24
  test_size: 24
  max_length: 32
passes:
  - prune: {{ffn: 0.25}}
  - export_onnx: {{optimize: false}}
  - quantize: {{targets: [cpu]}}
benchmark:
  batch_sizes: [1]
  sequence_length: 16
  warmup: 1
  repetitions: 5
tracking:
  mlflow: {{uri: "sqlite:///{db}", experiment: searches}}
"""


def test_a_search_is_a_parent_run_with_one_child_per_trial(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts in ./mlruns
    write_labelled_csv(tmp_path, 240, 5)
    recipe = tmp_path / "lean.yaml"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe.write_text(LEAN_RECIPE.format(model=tiny_model_dir, db=tmp_path / "mlflow.db"))
    (tmp_path / "space.yaml").write_text("passes[0].prune.ffn: [0.25, 0.5]\n")
    out = tmp_path / "search"
    run_search(recipe, tmp_path / "space.yaml", out, "size", 1.0, None, 2, progress=False)
    trials = json.loads((out / "trials.json").read_text())
    pareto = json.loads((out / "pareto.json").read_text())

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("searches")
    assert experiment is not None, "the search did not log"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # the search; its trials' runs (no report) log nothing of their own
    parent = parents[0]
    parent_id = parent.info.run_id
    assert parent.info.run_name == "search lean"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(runs) == 1 + len(trials) == 3 and len(children) == len(trials)

    assert parent.data.params["objective"] == "size"
    assert parent.data.params["space.passes.0.prune.ffn"] == "[0.25, 0.5]"
    assert parent.data.metrics["floor"] == pytest.approx(pareto["floor"])
    assert parent.data.metrics["trials.total"] == pareto["trials"]["total"] == 2
    for row in [pareto["original"], *pareto["rows"]]:
        label = row["label"]
        assert parent.data.metrics[f"{label}/test_accuracy"] == pytest.approx(row["test_accuracy"])
        assert parent.data.metrics[f"{label}/size_bytes"] == row["size_bytes"]
    if pareto.get("best"):
        assert parent.data.tags["compress.best"] == pareto["best"]
    files = {a.path for a in client.list_artifacts(parent_id)}
    assert {"trials.json", "pareto.json", "report.md", "report.html"} <= files

    by_name = {c.info.run_name: c for c in children}
    for trial in trials:
        child = by_name[f"trial {trial['number']}"]
        assert child.data.params == {
            k.replace("[", ".").replace("]", ""): json.dumps(v) for k, v in trial["values"].items()
        }
        for figure in ("val_accuracy", "size_bytes", "p50_ms", "latency_ratio"):
            if trial[figure] is not None:
                assert child.data.metrics[figure] == pytest.approx(trial[figure]), figure
        assert child.data.tags["compress.state"] == trial["state"]
        assert child.data.tags["compress.on_front"] == json.dumps(trial["on_front"])
        assert child.info.status == ("FAILED" if trial["state"] == "fail" else "FINISHED")
