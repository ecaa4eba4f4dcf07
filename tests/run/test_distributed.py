"""Two processes, one run: `torchrun` (gloo on CPU) on a tiny model and real data.

Rotten Tomatoes (a 128-row slice) fine-tunes a config-built BERT for one
epoch, then exports it. The 2-process run must write one set of steps, record
`processes: 2`, take half the optimizer steps (each step sees a batch from
every process: the effective batch is 2 x batch_size), and land near a
single-process run of the same recipe. The runs differ in batch composition
and step count, so their numbers agree within a tolerance, not exactly.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compress.recipe import load_recipe
from compress.run.lock import LOCK_FILE
from compress.run.runner import run_recipe

ROOT = Path(__file__).parents[2]

RECIPE = """\
name: ddp
model: {{source: {model}}}
data: {{source: rotten-tomatoes, max_length: 32, train_samples: 128, validation_size: 64,
       test_size: 64}}
passes:
  - fine_tune: {{epochs: 1, batch_size: 16, lr: 1.0e-3, min_steps: 0}}
  - export_onnx
"""


def torchrun(recipe: Path, out: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`compress run` under `torchrun --standalone --nproc_per_node 2` (gloo, CPU)."""
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
    command += ["--nproc_per_node", "2", "-m", "compress", "run", str(recipe)]
    command += ["--out", str(out), "--no-report", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)


@pytest.fixture()
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    path = tmp_path / "ddp.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def manifest(out: Path, step: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / step / "manifest.json").read_text())
    return data


def test_two_processes_match_one(recipe_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run2"
    done = torchrun(recipe_file, out, tmp_path / "tmp")
    assert done.returncode == 0, done.stdout + done.stderr

    steps = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_FILE,))
    assert steps == [
        "00-input",
        "01-fine_tune",
        "02-export_onnx",
        "recipe.resolved.yaml",
        "reproduce.json",
    ]
    assert not list((tmp_path / "tmp").glob("compress-rank*"))  # rank 1's private work is gone
    assert done.stdout.count("[1/2] fine_tune") == 1  # only rank 0 prints
    assert "(2 processes)" in done.stdout

    two = manifest(out, "01-fine_tune")
    assert two["processes"] == 2 and two["metrics"]["processes"] == 2
    assert manifest(out, "02-export_onnx")["processes"] == 2
    assert manifest(out, "02-export_onnx")["metrics"]["parity"]["model.onnx"] <= 1e-4

    one_results = run_recipe(
        load_recipe(recipe_file), tmp_path / "run1", progress=False, report=False
    )
    one = one_results[1].manifest
    assert one["processes"] == 1
    # 128 rows in batches of 16: 8 steps alone, 4 when each step takes one batch per process
    assert one["metrics"]["steps"] == 8 and two["metrics"]["steps"] == 4
    (loss_1, acc_1), (loss_2, acc_2) = (
        (m["metrics"]["epochs"][0]["train_loss"], m["metrics"]["best_val_accuracy"])
        for m in (one, two)
    )
    assert math.isfinite(loss_2) and abs(loss_1 - loss_2) < 0.05
    assert abs(acc_1 - acc_2) <= 0.1
    assert one["key"] != two["key"]  # a different effective batch is a different step
    weights = "model.safetensors"
    assert (out / "01-fine_tune" / weights).read_bytes() != (
        out / "00-input" / weights
    ).read_bytes()

    again = torchrun(recipe_file, out, tmp_path / "tmp")  # every rank reuses every step
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("  reused ") == 2  # fine_tune and export_onnx
    assert manifest(out, "01-fine_tune")["key"] == two["key"]


def test_a_failure_on_rank_0_stops_every_rank(recipe_file: Path, tmp_path: Path) -> None:
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
