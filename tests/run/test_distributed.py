"""Two processes, one run: `torchrun` (gloo on CPU) on a tiny model and real data.

Rotten Tomatoes (a 128-row slice) fine-tunes a config-built BERT (dropout off)
for one epoch, then exports it. The 2-process run must write one set of steps,
record `processes: 2`, and take half the optimizer steps: each step sees one
batch of 16 from every process, a global batch of 32.

Gradient syncing is checked exactly: one process trained on the very same
global batches (each the two processes' batches of a step, joined; same seed,
same optimizer and schedule) must end with the same weights to 1e-5. The same
2-process run with syncing switched off (`unsynced_ddp.py`) must fail that
comparison, so the comparison is known to catch a broken sync.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import compress.passkit.training as training
from compress.recipe import load_recipe
from compress.run.lock import LOCK_FILE
from compress.run.runner import run_recipe

ROOT = Path(__file__).parents[2]
UNSYNCED = Path(__file__).with_name("unsynced_ddp.py")
TOLERANCE = 1e-5  # max |weight difference| between the 2-process and the 1-process run
WEIGHTS = "model.safetensors"

FINE_TUNE = "{epochs: 1, batch_size: 16, lr: 1.0e-3, min_steps: 0}"
RECIPE = """\
name: ddp
model: {{source: {model}}}
data: {{source: rotten-tomatoes, max_length: 32, train_samples: 128, validation_size: 64,
       test_size: 64}}
passes:
  - fine_tune: {fine_tune}
  - export_onnx
"""


def torchrun(
    recipe: Path, out: Path, tmp: Path, entry: Path | None = None, *overrides: str
) -> subprocess.CompletedProcess[str]:
    """`compress run` (or `entry`) under `torchrun --standalone --nproc_per_node 2` (gloo)."""
    tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TMPDIR": str(tmp),  # where the other rank's private step folders go
        "COMPRESS_DIST_TIMEOUT": "120",
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2"]
    command += [str(entry)] if entry else ["-m", "compress"]
    command += ["run", str(recipe), "--out", str(out), "--no-report"]
    for override in overrides:
        command += ["--set", override]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The recipe, on a copy of the tiny model with dropout off (its masks differ per batch)."""
    folder = tmp_path_factory.mktemp("ddp")
    model = folder / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    path = folder / "ddp.yaml"
    path.write_text(RECIPE.format(model=model, fine_tune=FINE_TUNE))
    return path


@pytest.fixture(scope="module")
def two_processes(
    recipe_file: Path,
) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """The recipe run by 2 processes (gloo, CPU), gradients synced: (run folder, result)."""
    out = recipe_file.parent / "run2"
    done = torchrun(recipe_file, out, recipe_file.parent / "tmp")
    assert done.returncode == 0, done.stdout + done.stderr
    yield out, done


def joined_pairs(
    real: Callable[..., list[np.ndarray]],
) -> Callable[..., list[np.ndarray]]:
    """`bucketed_batches` for one process standing in for two: each global batch of a step.

    It draws the half-size batches the two processes draw (same rng, same
    calls), pads the list as `shard` does, and joins the batches of process 0
    and 1 of every step into one batch, in step order.
    """

    def batches(
        lengths: list[int], batch_size: int, rng: np.random.Generator, bucket: int = 50
    ) -> list[np.ndarray]:
        halves = real(lengths, batch_size // 2, rng, bucket)
        halves = halves + halves[: -len(halves) % 2]
        return [np.concatenate(halves[i : i + 2]) for i in range(0, len(halves), 2)]

    return batches


@pytest.fixture(scope="module")
def one_process(recipe_file: Path) -> dict[str, Any]:
    """The fine_tune step of 1 process trained on the 2-process run's global batches."""
    only_training = "passes=[{fine_tune: " + FINE_TUNE + "}]"
    recipe = load_recipe(recipe_file, [only_training, "passes[0].fine_tune.batch_size=32"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "bucketed_batches", joined_pairs(training.bucketed_batches))
        results = run_recipe(recipe, recipe_file.parent / "run1", progress=False, report=False)
    step = results[1]
    return {"manifest": step.manifest, "weights": weights(step.folder)}


def weights(step: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(step / WEIGHTS)


def largest_gap(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest absolute difference between two state dicts of the same model."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def manifest(out: Path, step: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / step / "manifest.json").read_text())
    return data


def test_two_processes_write_one_run_and_reuse_it(
    two_processes: tuple[Path, subprocess.CompletedProcess[str]], recipe_file: Path
) -> None:
    """One set of steps from rank 0, `processes: 2` recorded, every step reused on a rerun,
    and a 1-process run does not reuse the 2-process training step."""
    out, done = two_processes
    steps = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_FILE,))
    assert steps == [
        "00-input",
        "01-fine_tune",
        "02-export_onnx",
        "recipe.resolved.yaml",
        "reproduce.json",
    ]
    tmp = recipe_file.parent / "tmp"
    assert not list(tmp.glob("compress-rank*"))  # rank 1's private work is gone
    assert done.stderr.count("[1/2] fine_tune") == 1  # only rank 0 logs progress
    assert "(2 processes)" in done.stderr

    two = manifest(out, "01-fine_tune")
    assert two["processes"] == 2 and two["metrics"]["processes"] == 2
    # 128 rows in batches of 16: 4 steps when each step takes one batch per process
    assert two["metrics"]["steps"] == 4
    assert manifest(out, "02-export_onnx")["processes"] == 2
    assert manifest(out, "02-export_onnx")["metrics"]["parity"]["model.onnx"] <= 1e-4
    assert weights(out / "01-fine_tune").keys() == weights(out / "00-input").keys()
    assert largest_gap(weights(out / "01-fine_tune"), weights(out / "00-input")) > 1e-3

    again = torchrun(recipe_file, out, tmp)  # every rank reuses every step
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stderr.count("  reused ") == 2  # fine_tune and export_onnx
    assert manifest(out, "01-fine_tune")["key"] == two["key"]

    # one process on a copy of the folder: the same recipe is another training step
    alone = recipe_file.parent / "alone"
    shutil.copytree(out, alone)
    recipe = load_recipe(recipe_file, ["passes=[{fine_tune: " + FINE_TUNE + "}]"])
    one = run_recipe(recipe, alone, progress=False, report=False)[1]
    assert not one.reused and one.manifest["processes"] == 1
    assert one.manifest["key"] != two["key"]
    assert one.manifest["metrics"]["steps"] == 8  # 128 rows in batches of 16, one process


def test_synced_gradients_match_one_process_on_the_same_global_batches(
    two_processes: tuple[Path, subprocess.CompletedProcess[str]], one_process: dict[str, Any]
) -> None:
    """DDP averages the 2 processes' gradients: its weights are the 1-process run's to 1e-5."""
    out, _ = two_processes
    two = manifest(out, "01-fine_tune")
    one = one_process["manifest"]
    assert one["processes"] == 1 and one["metrics"]["steps"] == two["metrics"]["steps"] == 4
    assert largest_gap(weights(out / "01-fine_tune"), one_process["weights"]) <= TOLERANCE
    loss_1, loss_2 = (m["metrics"]["epochs"][0]["train_loss"] for m in (one, two))
    assert loss_2 == pytest.approx(loss_1, abs=TOLERANCE)  # the mean over the same batches
    assert two["metrics"]["best_val_accuracy"] == one["metrics"]["best_val_accuracy"]


def test_unsynced_gradients_fail_the_same_comparison(
    recipe_file: Path, one_process: dict[str, Any]
) -> None:
    """With DDP's gradient averaging switched off, the comparison above fails: it catches it."""
    out = recipe_file.parent / "unsynced"
    only_training = "passes=[{fine_tune: " + FINE_TUNE + "}]"
    done = torchrun(recipe_file, out, recipe_file.parent / "tmp", UNSYNCED, only_training)
    assert done.returncode == 0, done.stdout + done.stderr
    unsynced = manifest(out, "01-fine_tune")
    assert unsynced["processes"] == 2 and unsynced["metrics"]["steps"] == 4
    assert largest_gap(weights(out / "01-fine_tune"), one_process["weights"]) > 100 * TOLERANCE


def test_a_failure_on_rank_0_stops_every_rank(recipe_file: Path, tmp_path: Path) -> None:
    """Rank 0 cannot lock the folder: both ranks stop with one error, nothing is written."""
    out = tmp_path / "run"
    out.mkdir()
    with (out / LOCK_FILE).open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the folder
        done = torchrun(recipe_file, out, tmp_path / "tmp")
    assert done.returncode != 0
    assert "being written by another compress run" in done.stderr
    assert "the main process (rank 0) failed while locking the run folder" in done.stderr
    assert not (out / "00-input").exists()
    shutil.rmtree(out)
