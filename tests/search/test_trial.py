"""One trial: early stops below the accuracy floor, recorded accuracies, budgets, the store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from compress.artifacts import StepStore, finished_step
from compress.data.loaders import load_dataset
from compress.recipe import load_recipe
from compress.search.command import parse_budget
from compress.search.trial import (
    Setup,
    absolute_sources,
    recorded_accuracy,
    run_config,
    trial_data,
)
from compress.tasks import get_task
from tests.conftest import write_labelled_csv

RECIPE = """\
model: {{source: {model}}}
data: {{source: data.csv, validation_size: 32, test_size: 32, max_length: 32}}
passes:
  - fine_tune: {{epochs: 1, batch_size: 16}}
  - prune: {{ffn: 0.5, recovery: {{epochs: 1}}}}
  - export_onnx
benchmark: {{batch_sizes: [1], sequence_length: 16, warmup: 1, repetitions: 5}}
"""


def test_a_trial_below_the_floor_stops_at_the_step_that_shows_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    write_labelled_csv(tmp_path, 160, 3)
    file = tmp_path / "r.yaml"
    file.write_text(RECIPE.format(model=tiny_model_dir))
    recipe = load_recipe(file)
    raw = absolute_sources(yaml.safe_load(file.read_text()), recipe.resolved)
    data = load_dataset(recipe.doc.data, tmp_path, "texts")
    task = get_task("text-classification")
    # a floor no model reaches: the pruned model's recovery records its validation accuracy
    setup = Setup(recipe, raw, 2, tmp_path / "s", data, task, recipe.doc.benchmark, 0.0, 1.01)
    outcome = run_config(setup, trial_data(raw, 2), "t")
    assert outcome.stopped is not None and outcome.stopped.startswith("02-prune: validation")
    assert not outcome.score
    run = outcome.folder / "run"
    assert (run / "02-prune" / "manifest.json").is_file()
    assert not (run / "03-export_onnx").exists()  # the rest of the trial never ran
    assert "stopped: 02-prune" in (outcome.folder / "log.txt").read_text()


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"best_val_accuracy": 0.8}, 0.8),
        ({"recovery": {"best_val_accuracy": 0.7}}, 0.7),
        ({"validation_accuracy": {"a.onnx": 0.6, "b.onnx": 0.65}}, 0.65),
        ({"parity": {"model.onnx": 1e-5}}, None),
        ({}, None),
    ],
)
def test_recorded_accuracy(metrics: dict[str, object], expected: float | None) -> None:
    assert recorded_accuracy({"metrics": metrics}) == expected


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("45m", 2700), ("1.5h", 5400), ("20", 1200), ("2 min", 120)]
)
def test_parse_budget(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "-5m", "tenminutes", "5d"])
def test_parse_budget_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_budget(text)


def _step(folder: Path, key: str) -> None:
    from compress.artifacts import write_manifest

    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"weights")
    (folder / "sub").mkdir()
    (folder / "sub" / "tokenizer.json").write_text("{}")
    artifact = {"kind": "onnx", "key": key, "variants": [], "meta": {}}
    write_manifest(folder, {"pass": "export_onnx", "key": key, "artifact": artifact, "metrics": {}})


def test_step_store_links_a_finished_step_into_another_run(tmp_path: Path) -> None:
    _step(tmp_path / "a" / "02-export_onnx", "k1")
    store = StepStore(tmp_path / "store")
    step = finished_step(tmp_path / "a" / "02-export_onnx")
    assert step is not None
    store.keep(step)
    got = store.fetch("k1", tmp_path / "b" / "02-export_onnx")
    assert got is not None and got.manifest["key"] == "k1"
    assert (got.folder / "sub" / "tokenizer.json").read_text() == "{}"
    assert (got.folder / "model.onnx").stat().st_ino == (step.folder / "model.onnx").stat().st_ino
    assert store.fetch("k2", tmp_path / "c" / "02-export_onnx") is None  # another key
    # a stored file that changed is never handed out
    stored = tmp_path / "store" / "k1" / "model.onnx"
    stored.unlink()
    stored.write_bytes(b"tampered")
    assert store.fetch("k1", tmp_path / "d" / "02-export_onnx") is None
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="not a step key"):
        store.fetch("../x", tmp_path / "e")
    assert json.loads((got.folder / "manifest.json").read_text())["pass"] == "export_onnx"
