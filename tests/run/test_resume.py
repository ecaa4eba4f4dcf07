"""Interrupted runs: a run killed at any moment resumes, skips finished steps, ends the same.

Real `compress run` processes are killed with SIGKILL (no cleanup code runs)
while a step is being written: during fine_tune training, during ONNX export
(after model.onnx is written, before model_ort.onnx) and during INT8
calibration. The moment is found by watching the run folder for the step's
`.NN-pass.partial` folder and the run's own progress lines. Each rerun must
reuse what finished, and the final run must match an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from compress.artifacts import hash_json, read_manifest
from compress.cli import main
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv

ROOT = Path(__file__).parents[2]
COMMAND = (sys.executable, "-u", "-m", "compress", "run")
STEPS = ("00-input", "01-fine_tune", "02-export_onnx", "03-quantize")
WEIGHTS = {
    "01-fine_tune": ["model.safetensors"],
    "02-export_onnx": ["model.onnx", "model_ort.onnx"],
    "03-quantize": ["model_int8_cpu.onnx", "model_int8_qdq.onnx"],
}

RECIPE = """\
name: resume
seed: 3
model:
  source: {model}
data:
  source: data.csv
  validation_size: 32
  test_size: 32
  max_length: 32
passes:
  - fine_tune: {{epochs: 2, batch_size: 16}}
  - export_onnx
  - quantize: {{calibration_samples: 128}}
"""


class Run:
    """`compress run` in a child process whose output is collected line by line."""

    def __init__(self, recipe: Path, out: Path) -> None:
        self.out = out
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.proc = subprocess.Popen(
            [*COMMAND, str(recipe), "--out", str(out), "--no-report"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill_when(self, partial: str, printed: str, timeout: float = 240) -> None:
        """SIGKILL the run once `partial` exists and it has printed a line holding `printed`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended before '{printed}':\n{self.output()}")
            if (self.out / partial).is_dir() and any(printed in line for line in self.lines):
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
                self._reader.join(timeout=30)
                return
            time.sleep(0.01)
        self.proc.kill()
        self.proc.wait(timeout=30)
        pytest.fail(f"timed out waiting for {partial} and '{printed}':\n{self.output()}")


@pytest.fixture()
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_labelled_csv(tmp_path, 200, 11)
    path = tmp_path / "resume.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finished_steps(out: Path) -> list[str]:
    return [s for s in STEPS if read_manifest(out / s) is not None]


def assert_killed_inside(out: Path, step: str, finished: list[str]) -> None:
    """The kill hit `step` mid-write: its partial folder exists and it does not look finished."""
    assert (out / f".{step}.partial").is_dir()
    assert not (out / step).exists()
    assert finished_steps(out) == finished


def test_killed_runs_resume_to_the_same_result(
    recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "reference"
    run_recipe(load_recipe(recipe_file), reference, progress=False, report=False)
    capsys.readouterr()
    out = tmp_path / "killed"

    # 1. killed during training (after its first of two epochs)
    Run(recipe_file, out).kill_when(".01-fine_tune.partial", "fine_tune epoch 1:")
    assert_killed_inside(out, "01-fine_tune", ["00-input"])

    # 2. rerun: the input is reused, training starts over; killed during export, after
    #    model.onnx was written and checked but before the fused model_ort.onnx
    second = Run(recipe_file, out)
    second.kill_when(".02-export_onnx.partial", "model.onnx matches PyTorch")
    assert "(reused" in second.output()
    assert (out / ".02-export_onnx.partial" / "model.onnx").is_file()
    assert_killed_inside(out, "02-export_onnx", ["00-input", "01-fine_tune"])

    # 3. rerun: training is skipped; killed while calibrating the TensorRT Q/DQ model
    third = Run(recipe_file, out)
    third.kill_when(".03-quantize.partial", "INT8 symmetric Q/DQ for TensorRT")
    assert "reused" in third.output() and "fine_tune epoch" not in third.output()
    assert (out / ".03-quantize.partial" / "model_int8_cpu.onnx").is_file()
    assert_killed_inside(out, "03-quantize", ["00-input", "01-fine_tune", "02-export_onnx"])

    # 4. rerun to the end: only quantize runs again
    assert main(["run", str(recipe_file), "--out", str(out), "--no-report"]) == 0
    printed = capsys.readouterr().err  # progress lines are logged to stderr
    assert printed.count("reused") == 3 and "fine_tune epoch" not in printed
    assert finished_steps(out) == list(STEPS)
    assert not list(out.glob(".*.partial"))

    # the same result as the run that was never interrupted
    for step in STEPS:
        mine, theirs = read_manifest(out / step), read_manifest(reference / step)
        assert mine is not None and theirs is not None
        assert mine["key"] == theirs["key"]
        assert mine["metrics"] == theirs["metrics"], step
    for step, files in WEIGHTS.items():
        for name in files:
            assert sha(out / step / name) == sha(reference / step / name), f"{step}/{name}"
    assert json.loads((out / "reproduce.json").read_text()) == json.loads(
        (reference / "reproduce.json").read_text()
    )


def test_reproduce_record(recipe_file: Path, tmp_path: Path) -> None:
    from importlib.metadata import version

    recipe = load_recipe(recipe_file, ["passes=[]"])
    out = tmp_path / "run"
    run_recipe(recipe, out, progress=False, report=False)
    record = json.loads((out / "reproduce.json").read_text())
    assert record["recipe_sha"] == hash_json(recipe.resolved)
    assert record["seed"] == 3
    data_manifest = read_manifest(out / "00-input")
    assert data_manifest is not None
    assert record["data_key"] == data_manifest["data_key"]
    assert record["input_model_key"] == data_manifest["key"]
    for package in ("torch", "transformers", "onnxruntime", "onnx"):
        assert record["versions"][package] == version(package)
    assert record["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    # the resolved recipe beside it reproduces the same hash
    assert hash_json(load_recipe(out / "recipe.resolved.yaml").resolved) == record["recipe_sha"]


def test_second_run_on_a_busy_folder_fails_at_once(
    recipe_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second run on a locked folder fails with one error line after one non-blocking try
    at the lock (no blocking lock, no sleep), leaves the first run alone, and the lock
    dies with its process."""
    out = tmp_path / "busy"
    first = Run(recipe_file, out)
    try:
        deadline = time.monotonic() + 240
        while not (out / ".01-fine_tune.partial").is_dir():
            assert first.proc.poll() is None, first.output()
            if time.monotonic() > deadline:  # a hang guard, not a check of speed
                pytest.fail(f"the first run never started training:\n{first.output()}")
            time.sleep(0.01)
        real_flock = fcntl.flock
        flocks: list[int] = []
        sleeps: list[float] = []

        def flock(handle: Any, operation: int) -> None:
            flocks.append(operation)
            real_flock(handle, operation)

        monkeypatch.setattr(fcntl, "flock", flock)
        monkeypatch.setattr(time, "sleep", sleeps.append)
        code = main(["run", str(recipe_file), "--out", str(out), "--no-report", "--quiet"])
        monkeypatch.undo()
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert err == [
            f"error: {out} is being written by another compress run (pid {first.proc.pid}); "
            "wait for it or choose another --out"
        ]
        # it does not wait for the lock: one try, non-blocking, and no sleep to try again
        assert flocks == [fcntl.LOCK_EX | fcntl.LOCK_NB]
        assert sleeps == []
        assert first.proc.poll() is None  # and the first run goes on untouched
    finally:
        first.proc.kill()
        first.proc.wait(timeout=30)
    # the lock dies with its process: the folder is usable at once
    done = subprocess.run(
        [*COMMAND, str(recipe_file), "--out", str(out), "--no-report", "--set", "passes=[]"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
