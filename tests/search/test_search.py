"""`compress search` on a tiny model: outputs, the shared step cache, resume, early stops."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import compress.search.study as study_module
from compress.cli import main
from compress.recipe import load_recipe
from compress.search.command import run_search
from compress.search.study import Objective
from tests.conftest import write_labelled_csv

RECIPE = """\
name: tiny
seed: 1
model:
  source: {model}
data:
  source: data.csv
  validation_size: 48
  test_size: 48
  max_length: 32
passes:
  - fine_tune: {{epochs: 1, batch_size: 16}}
  - prune: {{ffn: 0.25}}
  - export_onnx
  - quantize: {{targets: [cpu]}}
  - qat: {{epochs: 1, calibration_samples: 16}}
    from: prune
benchmark:
  batch_sizes: [1]
  sequence_length: 16
  warmup: 1
  repetitions: 5
"""
SPACE = """\
passes[1].prune.ffn: [0.25, 0.5]
passes[3].quantize.cpu_mode: [dynamic, static]
"""


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
"""


@pytest.fixture()
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_labelled_csv(tmp_path, 240, 5)
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    (tmp_path / "space.yaml").write_text(SPACE)
    return path


def _search(recipe_file: Path, out: Path, trials: int = 4) -> list[Path]:
    space = recipe_file.parent / "space.yaml"
    return run_search(
        recipe_file, space, out, "size", 1.0, None, trials, stage="quantize", progress=False
    )


def _finished_values(out: Path) -> list[dict[str, Any]]:
    trials = json.loads((out / "trials.json").read_text())
    return [t["values"] for t in trials if t["state"] in ("complete", "pruned")]


def _score(out: Path, trial: dict[str, Any]) -> dict[str, Any]:
    """What the trial measured, as it wrote it (`trials/<id>/score.json`)."""
    score: dict[str, Any] = json.loads((out / trial["folder"] / "score.json").read_text())["score"]
    return score


def _study(out: Path) -> Any:
    """The search's Optuna study, read back from its journal."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name="search", storage=storage)


def _test_accuracy(recipe_file: Path, model_dir: Path) -> float:
    """Accuracy on the recipe's test split of the PyTorch model in `model_dir`, computed here
    with transformers (one padded batch), not by compress's benchmark."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compress.data.loaders import load_dataset

    recipe = load_recipe(recipe_file)
    test = load_dataset(recipe.doc.data, recipe_file.parent, "texts").test
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    batch = tokenizer(
        list(test.inputs), padding=True, truncation=True, max_length=32, return_tensors="pt"
    )
    with torch.inference_mode():
        predicted = model(**batch).logits.argmax(-1).numpy()
    return float(np.mean(predicted == np.asarray(test.labels)))


def _dominates(a: list[float], b: list[float], directions: list[str]) -> bool:
    """Whether objective values `a` are no worse than `b` everywhere and better somewhere."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    better = [s * (x - y) for s, x, y in zip(signs, a, b, strict=True)]
    return all(d >= 0 for d in better) and any(d > 0 for d in better)


def test_search_writes_front_best_recipe_and_shares_steps(
    recipe_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "search"
    written = _search(recipe_file, out)
    names = {p.name for p in written}
    assert {"trials.json", "pareto.json", "report.md", "report.html", "best.yaml"} <= names
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == 4 and all(t["state"] == "complete" for t in trials)
    # the recipe's own values (ffn 0.25, cpu_mode's default dynamic) are asked first
    assert trials[0]["hand_written"]
    assert trials[0]["values"] == {
        "passes[1].prune.ffn": 0.25,
        "passes[3].quantize.cpu_mode": "dynamic",
    }
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["original"]["label"] == "original" and pareto["original"]["speedup"] == 1.0
    rows = pareto["rows"]
    assert rows[0]["label"] == "hand-written"
    assert any(r["on_front"] for r in rows)
    for row in rows:  # the test split is measured for the front only, after the search
        assert row["n_test"] == 48
        assert row["size_bytes"] < pareto["original"]["size_bytes"]
    # each row's validation accuracy is the one its trial scored and told the study
    scored = {t["folder"]: t for t in trials if t["state"] == "complete"}
    for row in rows:
        trial = scored[str(Path(row["folder"]).relative_to(out))]
        assert row["validation"]["accuracy"] == _score(out, trial)["val_accuracy"]
        assert row["validation"]["accuracy"] == trial["val_accuracy"]
    # the original's test accuracy is its predictions' accuracy on the test split, recomputed
    assert pareto["original"]["test_accuracy"] == _test_accuracy(
        recipe_file, Path(pareto["original"]["folder"]) / "run" / "01-fine_tune"
    )
    assert pareto["best"] in {r["label"] for r in rows if r["on_front"]}
    # best.yaml is the whole recipe (qat after the scored pass included) with the best values
    best = load_recipe(out / "best.yaml")
    assert [s.name for s in best.steps][-1] == "qat"
    chosen = next(r for r in rows if r["label"] == pareto["best"])
    assert best.steps[1].config.ffn == chosen["values"]["passes[1].prune.ffn"]
    # every trial is a normal recipe and run folder; the fine-tuned model is computed once
    folders = {t["folder"] for t in trials}
    fine_tuned = set()
    for folder in folders:
        trial = out / folder
        recipe = load_recipe(trial / "recipe.yaml")
        assert [s.name for s in recipe.steps] == ["fine_tune", "prune", "export_onnx", "quantize"]
        model = trial / "run" / "01-fine_tune" / "model.safetensors"
        fine_tuned.add(os.stat(model).st_ino)
    assert len(fine_tuned) == 1  # hard links of the one stored step
    stored = [json.loads(p.read_text())["pass"] for p in (out / "steps").glob("*/manifest.json")]
    assert stored.count("fine_tune") == 1
    assert "| original |" in (out / "report.md").read_text()


def test_interrupted_search_resumes_to_the_same_front(
    recipe_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = tmp_path / "whole"
    _search(recipe_file, whole)
    original = study_module.run_config
    calls = []

    def interrupted(setup: Any, data: dict[str, Any], label: str) -> Any:
        calls.append(label)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill would: the trial is left running
        return original(setup, data, label)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(study_module, "run_config", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _search(recipe_file, stopped)
    monkeypatch.setattr(study_module, "run_config", original)
    _search(recipe_file, stopped)
    assert _finished_values(stopped) == _finished_values(whole)
    front = [r["values"] for r in json.loads((whole / "pareto.json").read_text())["rows"]]
    again = [r["values"] for r in json.loads((stopped / "pareto.json").read_text())["rows"]]
    assert again == front
    states = [t["state"] for t in json.loads((stopped / "trials.json").read_text())]
    assert states.count("fail") == 1  # the interrupted trial, asked again with its values


@pytest.mark.parametrize("objective", ["latency", "both"])
def test_latency_and_both_objectives_tell_the_study_the_measured_figures(
    tmp_path: Path, tiny_model_dir: Path, objective: Objective
) -> None:
    """`--objective latency` tells Optuna (accuracy, trial p50 / original p50) as each trial
    measured it; `both` adds the size ratio as a third objective. The study's front is the
    non-dominated set of those figures, and the best row is the front's lowest latency
    (`both`: the lowest geometric mean of latency and size ratio)."""
    write_labelled_csv(tmp_path, 96, 5)
    recipe_file = tmp_path / "lean.yaml"  # no training: the input model is the original
    recipe_file.write_text(LEAN_RECIPE.format(model=tiny_model_dir))
    space = tmp_path / "space.yaml"
    space.write_text("passes[0].prune.ffn: [0.25, 0.5]\n")
    out = tmp_path / objective
    # max_drop 100: every trial is feasible, so the front is decided by the objectives alone
    run_search(recipe_file, space, out, objective, 100.0, None, 2, stage="quantize", progress=False)
    study = _study(out)
    pareto = json.loads((out / "pareto.json").read_text())
    trials = {t["number"]: t for t in json.loads((out / "trials.json").read_text())}
    original = _score(out, {"folder": str(Path(pareto["original"]["folder"]).relative_to(out))})
    directions = [d.name.lower() for d in study.directions]
    assert pareto["objective"] == objective
    assert directions == ["maximize", "minimize"] + ["minimize"] * (objective == "both")

    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    for trial in done:
        score = _score(out, trials[trial.number])
        latency = score["p50_ms"] / score["original_p50_ms"]  # timed in the trial, interleaved
        assert score["latency_ratio"] == pytest.approx(latency, rel=1e-12)
        expected = [score["val_accuracy"], latency]
        if objective == "both":
            expected.append(score["size_bytes"] / original["size_bytes"])
        assert trial.values == pytest.approx(expected, rel=1e-12)
        assert trials[trial.number]["latency_ratio"] == score["latency_ratio"]

    # the front: exactly the trials no other trial dominates on the recorded figures
    front = {t.number for t in study.best_trials}
    for trial in done:
        beaten = any(_dominates(o.values, trial.values, directions) for o in done)
        assert (trial.number in front) == (not beaten), trial.number
        assert trials[trial.number]["on_front"] == (trial.number in front)

    # the best row is the front's cheapest on validation, per objective
    def cost(trial: Any) -> tuple[float, float]:
        value = trial.values[1] if objective == "latency" else math.prod(trial.values[1:]) ** 0.5
        return value, -trial.values[0]

    cheapest = min((t for t in done if t.number in front), key=cost)
    best = next(r for r in pareto["rows"] if r["label"] == pareto["best"])
    assert best["on_front"] and best["values"] == trials[cheapest.number]["values"]
    assert best["validation"]["latency_ratio"] == cheapest.values[1]


def test_a_killed_search_process_resumes_to_the_same_front(
    recipe_file: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    _search(recipe_file, whole)
    out = tmp_path / "killed"
    space = recipe_file.parent / "space.yaml"
    command = [sys.executable, "-m", "compress", "search", str(recipe_file), "--space", str(space),
               "--objective", "size", "--stage", "quantize", "--trials", "4", "--out", str(out),
               "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    # SIGKILL (no cleanup runs) once the original and the first trial were scored
    while len(list(out.glob("trials/*/score.json"))) < 2:
        assert proc.poll() is None, "the search ended before it was killed"
        if time.monotonic() > deadline:  # a hang guard, not a check of speed
            proc.kill()
            pytest.fail("the search scored nothing in 300 s")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (out / "pareto.json").exists()
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert _finished_values(out) == _finished_values(whole)
    front = [r["values"] for r in json.loads((whole / "pareto.json").read_text())["rows"]]
    again = [r["values"] for r in json.loads((out / "pareto.json").read_text())["rows"]]
    assert again == front


def test_a_search_folder_refuses_another_space(
    recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same command with only the space changed is refused with one error line; with the
    space it searched, the folder is accepted (so the space alone made the difference)."""
    out = tmp_path / "search"
    _search(recipe_file, out, trials=1)
    space = recipe_file.parent / "space.yaml"
    command = ["search", str(recipe_file), "--space", str(space), "--objective", "size",
               "--max-drop", "1.0", "--stage", "quantize", "--trials", "1", "--out", str(out),
               "--quiet"]  # fmt: skip
    capsys.readouterr()
    space.write_text(SPACE.replace("[0.25, 0.5]", "[0.25, 0.75]"))
    assert main(command) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out} holds a search of another recipe, space or objective; "
        "use another --out (or delete the folder to start over)"
    )
    space.write_text(SPACE)
    assert main(command) == 0  # the space it searched: resumed, nothing left to run
    assert len(json.loads((out / "trials.json").read_text())) == 1


BAD_SPACES = [  # (space.yaml, the error it must give)
    ("passes[1].prune.fnn: [0.5]\n",
     "space.yaml:1 passes[1].prune.fnn: prune has no option 'fnn' (did you mean 'ffn'?)"),
    ("passes[1].distill.layers: [2]\n",
     "space.yaml:1 passes[1].distill.layers: passes[1] is not distill (passes[1] is prune)"),
    ("passes[9].prune.ffn: [0.5]\n", "passes[9].prune.ffn: the recipe has 5 passes"),
    ("passes[1].prune.ffn: [0.5]\npasses[1].prune.heads: {low: 0.5, high: 0.2}\n",
     "space.yaml:2 passes[1].prune.heads: low must be below high"),
    ("passes[1].prune.ffn: [0.5, 1.5]\n",
     "space.yaml:1 passes[1].prune.ffn: 1.5 makes an invalid recipe"),
    ("passes[1].prune.ffn: 0.5\n", "give a list of choices or a range"),
    ("passes[1].prune.ffn: {low: 0.1, hi: 0.5}\n",
     "space.yaml:1 passes[1].prune.ffn: unknown range key 'hi' (did you mean 'high'?)"),
    ("pases[1].prune.ffn: [0.5]\n",
     "pases[1].prune.ffn: not a recipe key (did you mean 'passes'?)"),
    ("passes[4].qat.epochs: [1, 2]\n", "is after the scored pass (04-quantize)"),
]  # fmt: skip


@pytest.mark.parametrize(("space", "expected"), BAD_SPACES)
def test_bad_spaces_are_refused_before_anything_runs(
    recipe_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str, expected: str
) -> None:
    space_file = tmp_path / "space.yaml"
    space_file.write_text(space)
    out = tmp_path / "search"
    code = main(["search", str(recipe_file), "--space", str(space_file), "--trials", "1",
                 "--stage", "quantize", "--out", str(out)])  # fmt: skip
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (out / "trials").exists()


def test_search_needs_a_stopping_rule(
    recipe_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = recipe_file.parent / "space.yaml"
    assert main(["search", str(recipe_file), "--space", str(space)]) == 2
    assert "--trials N and/or --budget TIME" in capsys.readouterr().err


def test_the_flagship_space_holds_the_flagship() -> None:
    from compress.recipe.yaml_lines import load_yaml
    from compress.search.space import load_space

    root = Path(__file__).parents[2]
    file = root / "recipes" / "distil_int8.yaml"
    raw, lines = load_yaml(file.read_text(), str(file))
    space = load_space(root / "bench" / "search" / "flagship_space.yaml", raw, lines, file)
    # the hand-written values lie inside the space, so they are the search's first trial
    own = space.current(load_recipe(file).resolved)
    assert own == {
        "passes[1].distill.layers": 3,
        "passes[2].prune.heads": 0.5,
        "passes[2].prune.ffn": 0.75,
        "passes[3].prune_vocab.reserve": 15000,
        "passes[5].quantize.cpu_mode": "dynamic",
        "passes[5].quantize.method": "minmax",
    }
