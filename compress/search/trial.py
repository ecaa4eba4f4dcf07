"""One trial of a search: a normal recipe and run folder, scored on the validation split.

A trial's recipe is the searched recipe with the trial's values, ending at the
scored pass (`--stage`); it is written to `trials/<id>/recipe.yaml` and run into
`trials/<id>/run/` like any recipe, sharing finished steps with every other
trial through the search's step store. Its score (validation accuracy; batch
latency timed interleaved with the original, as a ratio; size on disk) is
kept in `trials/<id>/score.json`, so a trial scored before a search was
stopped is not measured again. A trial whose intermediate model already
falls short of the accuracy floor by more than the margin is stopped there
(the scored model itself is scored: it is then merely infeasible).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from compress._version import __version__
from compress.artifacts import (
    Artifact,
    StepResult,
    StepStore,
    Variant,
    finished_step,
    hash_json,
    read_json,
    write_json_atomic,
)
from compress.benchmark.settings import BenchmarkSettings
from compress.benchmark.stage import benchmark_variant, interleaved_latency
from compress.data import Dataset, Split
from compress.errors import CompressError, UserError
from compress.recipe import Recipe, load_recipe
from compress.run.report_step import CPU_RUNTIMES, original_index
from compress.run.runner import run_recipe
from compress.search.locks import TRIAL_LOCK, hold
from compress.tasks import Task

log = logging.getLogger(__name__)
SCORE = "score.json"


class TrialStopped(Exception):
    """A trial cannot reach the accuracy floor (raised from the runner's step callback)."""


@dataclass
class Setup:
    """What every trial of one search shares."""

    recipe: Recipe  # the searched recipe, validated
    raw: dict[str, Any]  # its raw data (local sources made absolute)
    stage: int  # index in recipe.steps of the pass whose model is scored
    out: Path
    data: Dataset
    task: Task
    settings: BenchmarkSettings  # one batch size: the latency objective's
    margin: float  # accuracy points below the floor at which a trial stops early
    floor: float | None = None  # validation accuracy a trial must keep (set once known)
    original: Stage | None = None  # the original's scored model (set once it has run)

    @property
    def store(self) -> StepStore:
        return StepStore(self.out / "steps")

    @property
    def batch(self) -> str:
        return f"b{self.settings.batch_sizes[0]}"


@dataclass(frozen=True)
class Stage:
    """A scored model: its step folder and variant."""

    folder: Path
    variant: str

    def load(self) -> tuple[Artifact, Variant]:
        step = finished_step(self.folder)
        if step is None:
            raise UserError(f"{self.folder}: the step is gone; run the search again")
        return step.artifact, next(v for v in step.artifact.variants if v.name == self.variant)


@dataclass
class Outcome:
    """What one trial gave: its folder, and a score or the reason it has none."""

    folder: Path
    score: dict[str, Any] = field(default_factory=dict)
    stopped: str | None = None
    error: str | None = None
    seconds: float = 0.0
    reused: bool = False  # the score was measured before (the same values, asked again)


def absolute_sources(raw: Any, resolved: dict[str, Any]) -> dict[str, Any]:
    """The raw recipe with local model/data sources made absolute (trial recipes live elsewhere)."""
    data = dict(raw) if isinstance(raw, dict) else {}
    for section in ("model", "data"):
        source = resolved[section]["source"]
        if Path(source).is_absolute():
            data[section] = {**(data.get(section) or {}), "source": source}
    return data


def trial_data(values_data: dict[str, Any], upto: int) -> dict[str, Any]:
    """The trial's recipe: the searched recipe's `values_data` cut after pass `upto`."""
    data = copy.deepcopy(values_data)
    data["passes"] = list(data.get("passes") or [])[: upto + 1]
    return data


def trial_id(data: dict[str, Any]) -> str:
    """A short id of a trial recipe: the same values give the same folder (and score)."""
    return hash_json({k: v for k, v in data.items() if k != "name"})[:10]


def run_config(setup: Setup, data: dict[str, Any], label: str) -> Outcome:
    """Run one trial recipe (`data`) to its last pass and score it on the validation split.

    A worker that asks for values another worker is running waits for it (the
    trial folder's lock), then reuses its score.
    """
    started = time.time()
    folder = setup.out / "trials" / trial_id(data)
    with hold(folder / TRIAL_LOCK):
        outcome = _run_config(setup, data, label, folder)
    outcome.seconds = time.time() - started
    return outcome


def _run_config(setup: Setup, data: dict[str, Any], label: str, folder: Path) -> Outcome:
    started = time.time()
    # the same values asked again (another trial number, another name) reuse the score
    score_key = hash_json(
        {"recipe": data, "settings": setup.settings.model_dump(), "v": __version__}
    )
    data = {**data, "name": f"{setup.recipe.name}-{label}"}
    recipe_file = folder / "recipe.yaml"
    if not recipe_file.is_file():  # the first trial of these values names the folder's recipe
        partial = folder / ".recipe.yaml.tmp"
        partial.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        os.replace(partial, recipe_file)
    cached = read_json(folder / SCORE)
    if (
        isinstance(cached, dict)
        and cached.get("key") == score_key
        and finished_step(Path(cached["score"]["stage"])) is not None  # not reclaimed
    ):
        return Outcome(folder, cached["score"], reused=True)
    recipe = load_recipe(recipe_file)
    original_at = original_index(recipe)

    def check(step: StepResult) -> None:
        index = len(checked)
        checked.append(step)
        accuracy = recorded_accuracy(step.manifest)
        last = index == len(recipe.steps)  # the scored model: scored, not stopped
        if setup.floor is None or index <= original_at or last or accuracy is None:
            return
        if accuracy < setup.floor - setup.margin / 100:
            raise TrialStopped(
                f"{step.folder.name}: validation accuracy {accuracy:.2%} is more than "
                f"{setup.margin:g} points below the floor {setup.floor:.2%}"
            )

    checked: list[StepResult] = []
    with (
        open(folder / "log.txt", "a", encoding="utf-8") as trial_log,
        contextlib.redirect_stdout(trial_log),
        contextlib.redirect_stderr(trial_log),
        _logging_to(trial_log),
    ):
        try:
            results = run_recipe(
                recipe,
                folder / "run",
                progress=False,
                report=False,
                store=setup.store,
                after_step=check,
            )
        except TrialStopped as exc:
            log.info(f"stopped: {exc}")
            return Outcome(folder, stopped=str(exc))
        except CompressError as exc:  # values the space allows one by one, refused together
            log.warning(f"error: {exc}")
            return Outcome(folder, error=str(exc))
    stage = scored_stage(results[-1])
    score = _score(setup, stage)
    seconds = time.time() - started
    write_json_atomic(folder / SCORE, {"key": score_key, "score": score, "seconds": seconds})
    return Outcome(folder, score)


@contextlib.contextmanager
def _logging_to(stream: IO[str]) -> Iterator[None]:
    """The run's messages (INFO and up) go to the trial's own log file, and nowhere else."""
    logger = logging.getLogger("compress")
    handler = logging.StreamHandler(stream)
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers = [handler]
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    logger.propagate = False
    try:
        yield
    finally:
        handler.flush()
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


def scored_stage(step: StepResult) -> Stage:
    """The variant of `step` a search scores: its CPU file, else any a CPU runs."""
    runnable = [v for v in step.artifact.variants if v.runtime in CPU_RUNTIMES]
    if not runnable:
        raise UserError(
            f"{step.folder}: no model a CPU runs to score (variants: "
            f"{', '.join(v.name for v in step.artifact.variants)})"
        )
    best = next((v for v in runnable if v.target == "cpu"), runnable[-1])
    return Stage(step.folder, best.name)


def recorded_accuracy(manifest: dict[str, Any]) -> float | None:
    """The validation accuracy a step recorded (a training pass's best, a quantized file's)."""
    metrics = manifest.get("metrics") or {}
    for source in (metrics.get("recovery"), metrics):
        if isinstance(source, dict) and isinstance(source.get("best_val_accuracy"), int | float):
            return float(source["best_val_accuracy"])
    files = metrics.get("validation_accuracy")
    if isinstance(files, dict) and files:
        return max(float(v) for v in files.values())
    return None


def accuracy_on(setup: Setup, stage: Stage, split: Split) -> dict[str, Any]:
    """Accuracy, size and parameters of a scored model on `split` (no latency)."""
    artifact, variant = stage.load()
    figures = benchmark_variant(
        artifact,
        variant,
        split,
        setup.settings,
        setup.recipe.doc.data.max_length,
        progress=False,
        task=setup.task,
        measure=False,
    )
    return {k: figures[k] for k in ("accuracy", "macro_f1", "n_eval", "size_bytes", "parameters")}


def latencies(setup: Setup, stages: dict[str, Stage], split: Split) -> dict[str, float]:
    """p50 ms of each model at the search's batch size, all timed interleaved."""
    loaded = {label: stage.load() for label, stage in stages.items()}
    timed = interleaved_latency(loaded, split.inputs, setup.settings, setup.task)
    return {label: float(timed[label][setup.batch]["p50_ms"]) for label in stages}


def _score(setup: Setup, stage: Stage) -> dict[str, Any]:
    original = setup.original or stage  # scoring the original itself: it is its own reference
    figures = accuracy_on(setup, stage, setup.data.validation)
    timed = latencies(setup, {"original": original, "trial": stage}, setup.data.validation)
    return {
        "stage": str(stage.folder),
        "variant": stage.variant,
        "val_accuracy": figures["accuracy"],
        "p50_ms": timed["trial"],
        "original_p50_ms": timed["original"],
        "latency_ratio": timed["trial"] / timed["original"],
        "size_bytes": figures["size_bytes"],
        "parameters": figures["parameters"],
    }
