"""The whole recipe on a tiny config-built model and a CSV: steps, manifests, caching, report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from compress.cli import main
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import untyped_fields, write_labelled_csv

HEADER = """\
name: {name}
model:
  source: {model}
data:
  source: data.csv
  validation_size: 32
  test_size: 32
  max_length: 32
"""
RECIPE = (
    HEADER.replace("{name}", "tiny")
    + """\
passes:
  - fine_tune: {{epochs: 1, batch_size: 16}}
  - distill: {{layers: 2, epochs: 1, batch_size: 16}}
  - export_onnx
  - quantize: {{calibration_samples: 16}}
benchmark:
  batch_sizes: [1, 2]
  sequence_length: 16
  warmup: 1
  repetitions: 5
"""
)


@pytest.fixture()
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_labelled_csv(tmp_path, 160, 7)
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def test_run_resume_and_report(
    recipe_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="compress")
    out = tmp_path / "run"
    first = run_recipe(load_recipe(recipe_file), out, progress=False)
    assert [r.name for r in first] == ["input", "fine_tune", "distill", "export_onnx", "quantize"]
    assert not any(r.reused for r in first)
    for result in first:
        manifest = json.loads((result.folder / "manifest.json").read_text())
        assert manifest["key"] == result.artifact.key
        assert {"config", "parent_key", "metrics", "versions", "seconds"} <= set(manifest)
    assert first[2].manifest["parent_key"] == first[1].artifact.key
    assert first[3].manifest["metrics"]["parity"]["model.onnx"] <= 1e-4

    report = json.loads((out / "report.json").read_text())
    assert untyped_fields(report) == set()  # every figure is in the published schema
    stages = [(s["stage"], s["variant"]) for s in report["stages"]]
    assert stages == [
        ("fine_tune", "fp32"),
        ("distill", "fp32"),
        ("export_onnx", "fp32"),
        ("export_onnx", "fp32-ort"),
        ("quantize", "int8-dynamic"),
        ("quantize", "int8-qdq"),
    ]
    original, final = report["stages"][0], report["stages"][4]
    assert original["vs_original"]["size_ratio"] == pytest.approx(1.0)
    assert final["vs_original"]["size_ratio"] == pytest.approx(
        original["size_bytes"] / final["size_bytes"]
    )
    assert final["parameters"] < original["parameters"]
    # 2 of 4 layers kept: about half the matmul FLOPs, carried from the HF stage to its INT8 export
    assert 1.8 < final["vs_original"]["flops_ratio"] < 2.2
    assert final["macs_per_token"] == report["stages"][1]["macs_per_token"]
    assert set(final["latency"]) == {"b1", "b2"} and final["n_eval"] == 32
    assert report["method"]["sequence_length"] == 16
    assert (out / "report.md").read_text().count("| quantize") == 2
    assert load_recipe(out / "recipe.resolved.yaml").steps[3].name == "quantize"

    assert "  evaluating " in caplog.text and "  timing " in caplog.text  # the first run's
    caplog.clear()
    second = run_recipe(load_recipe(recipe_file), out, progress=False)
    assert all(r.reused for r in second)
    rerun_output = caplog.text
    assert "reused" in rerun_output
    assert "evaluating" not in rerun_output and "timing" not in rerun_output  # cached too

    changed = load_recipe(recipe_file, ["passes[1].distill.temperature=3.0"])
    third = run_recipe(changed, out, progress=False, report=False)
    assert [r.reused for r in third] == [True, True, False, False, False]

    assert main(["report", str(out), "--quiet"]) == 0


def test_a_half_written_step_is_not_trusted(recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    recipe = load_recipe(recipe_file, ["passes=[{fine_tune: {epochs: 0.2}}]"])
    run_recipe(recipe, out, progress=False, report=False)
    # a crash after the step folder appeared but before its manifest: the step reruns
    (out / "01-fine_tune" / "manifest.json").unlink()
    (out / ".01-fine_tune.partial").mkdir()
    again = run_recipe(recipe, out, progress=False, report=False)
    assert [r.reused for r in again] == [True, False]
    assert (out / "01-fine_tune" / "manifest.json").is_file()
    assert not (out / ".01-fine_tune.partial").exists()


def test_same_seed_same_results(recipe_file: Path, tmp_path: Path) -> None:
    """Two runs with one seed train the same bytes; another seed does not (the check can fail)."""
    recipe = load_recipe(recipe_file, ["passes=[{fine_tune: {epochs: 0.5}}]"])
    first = run_recipe(recipe, tmp_path / "a", progress=False, report=False)
    second = run_recipe(recipe, tmp_path / "b", progress=False, report=False)
    assert first[1].manifest["metrics"]["epochs"] == second[1].manifest["metrics"]["epochs"]
    weights = "01-fine_tune/model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    other = load_recipe(recipe_file, ["passes=[{fine_tune: {epochs: 0.5}}]", "seed=1"])
    run_recipe(other, tmp_path / "c", progress=False, report=False)
    assert (tmp_path / "c" / weights).read_bytes() != (tmp_path / "a" / weights).read_bytes()
    assert (tmp_path / "a" / weights).read_bytes() != (
        tmp_path / "a" / "00-input" / "model.safetensors"
    ).read_bytes()  # and training changed the weights at all


def test_one_run_per_folder_and_a_reproduction_record(recipe_file: Path, tmp_path: Path) -> None:
    import fcntl

    from compress.artifacts import hash_json
    from compress.errors import UserError
    from compress.run.lock import LOCK_FILE

    recipe = load_recipe(recipe_file, ["passes=[]"])
    out = tmp_path / "run"
    out.mkdir()
    with (out / LOCK_FILE).open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
        with pytest.raises(UserError, match="being written by another compress run"):
            run_recipe(recipe, out, progress=False, report=False)
    run_recipe(recipe, out, progress=False, report=False)  # released: runs
    record = json.loads((out / "reproduce.json").read_text())
    assert record["recipe_sha"] == hash_json(recipe.resolved) and record["seed"] == 0
    assert {"data_key", "input_model_key", "versions"} <= set(record)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the run folder"):
        run_recipe(recipe, blocker / "run", progress=False, report=False)


BRANCHED = (
    HEADER.replace("{name}", "branched")
    + """\
passes:
  - fine_tune: {{epochs: 1, batch_size: 16}}
  - export_onnx: {{optimize: false}}
  - quantize: {{targets: [cpu], calibration_samples: 16}}
  - distill: {{layers: 2, epochs: 1, batch_size: 16}}
    from: fine_tune
  - export_onnx: {{optimize: false}}
benchmark: {{batch_sizes: [1], sequence_length: 16, warmup: 1, repetitions: 5}}
"""
)


def test_a_pass_takes_the_model_of_the_step_its_from_names(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """One model feeds two branches: the INT8 file and a distilled student's export."""
    write_labelled_csv(tmp_path, 160, 7)
    path = tmp_path / "branched.yaml"
    path.write_text(BRANCHED.format(model=tiny_model_dir))
    recipe = load_recipe(path)
    assert [s.source for s in recipe.steps] == [0, 1, 2, 1, 4]
    assert recipe.resolved["passes"][3]["from"] == "01-fine_tune"
    results = run_recipe(recipe, tmp_path / "run", progress=False)
    fine_tune, distill = results[1], results[4]
    assert distill.manifest["parent_key"] == fine_tune.artifact.key
    assert results[5].manifest["parent_key"] == distill.artifact.key
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    steps = [s["step"] for s in report["stages"]]
    assert steps == [
        "01-fine_tune",
        "02-export_onnx",
        "03-quantize",
        "04-distill",
        "05-export_onnx",
    ]
    # the resolved recipe of the run reads back to the same branches
    again = load_recipe(tmp_path / "run" / "recipe.resolved.yaml")
    assert [s.source for s in again.steps] == [s.source for s in recipe.steps]
