"""The run's benchmark step: measure its stages against the original model, write the report.

The original is the model a user had before compressing: the output of the
leading passes that do not compress (fine-tuning), else the input model, in
PyTorch FP32. Each stage's measurement is cached in its step folder, keyed by the
benchmark settings and data, so `compress report` re-renders without
re-measuring.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.artifacts import StepResult, hash_json, write_json_atomic
from compress.data import Dataset
from compress.errors import ModelLoadError
from compress.tasks.base import load_reference

if TYPE_CHECKING:
    from compress.benchmark.measurers import Measurer
    from compress.benchmark.settings import BenchmarkSettings
    from compress.recipe import Recipe
    from compress.tasks import Task

log = logging.getLogger(__name__)

# Runtimes every machine has; TensorRT engines are measured too where a GPU can run them.
CPU_RUNTIMES = ("torch", "onnxruntime")


def measured_runtimes() -> tuple[str, ...]:
    """The variant runtimes the report measures on this machine."""
    from compress.trt.runtime import engine_unavailable

    return CPU_RUNTIMES + (() if engine_unavailable() else ("tensorrt",))


def select_stages(
    recipe: Recipe, results: list[StepResult], runtimes: tuple[str, ...] | None = None
) -> list[tuple[StepResult, str]]:
    """(step, variant name) pairs to measure, the original first.

    Variants of other `runtimes` (default: `measured_runtimes()`) are left out;
    see `not_run`. With `stages: final`, the final step is the last one with a
    runnable variant.
    """
    runtimes = measured_runtimes() if runtimes is None else runtimes
    original = original_index(recipe)
    picked = [(results[original], results[original].artifact.variants[0].name)]
    later = [
        step
        for step in results[original + 1 :]
        if any(v.runtime in runtimes for v in step.artifact.variants) and not step.skipped
    ]
    if recipe.doc.benchmark.stages == "final" and later:
        later = later[-1:]
    for step in later:
        picked.extend((step, v.name) for v in step.artifact.variants if v.runtime in runtimes)
    return picked


def original_index(recipe: Recipe) -> int:
    """Index of the original in a run's results (input first): after the leading passes
    that do not compress (fine-tuning)."""
    leading = 0
    for step in recipe.steps:
        if step.info.compresses or step.info.produces != "hf":
            break
        leading += 1
    return leading


def not_run(
    results: list[StepResult], runtimes: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """The variants the report does not measure here, each with the reason."""
    from compress.trt.runtime import engine_unavailable

    runtimes = measured_runtimes() if runtimes is None else runtimes
    reason = f"TensorRT engine: built, not run ({engine_unavailable() or 'not selected'})"
    return [
        {"step": step.folder.name, "variant": v.name, "file": v.file, "reason": reason}
        for step in results
        for v in step.artifact.variants
        if v.runtime not in runtimes and not step.skipped
    ]


def skipped_steps(results: list[StepResult]) -> list[dict[str, Any]]:
    """The steps that did not run (a backend was missing), each with the reason."""
    return [
        {"step": step.folder.name, "pass": step.name, "reason": str(step.skipped)}
        for step in results
        if step.skipped
    ]


def measurement_key(recipe: Recipe, data: Dataset) -> str:
    """What a stage's cached figures depend on besides its files: settings, data, length."""
    # the report's budget only decides its warnings: changing it re-measures nothing
    settings = recipe.doc.benchmark.model_dump(mode="json", exclude={"generation": {"budget"}})
    return hash_json(
        {"settings": settings, "data": data.key, "max_length": recipe.doc.data.max_length}
    )


def make_report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> dict[str, Any]:
    """Measure every selected stage against the original and write report.json/.md/.html/.png.

    The one engine for every task; what differs is the task's measurer
    (`compress.benchmark.measurers`). Each stage's figures are cached in its
    step folder; the stages are timed together, interleaved, so the ratios to
    the original hold on a busy machine, and that is cached in the run folder
    for exactly this set of stages.
    """
    from compress.benchmark.report import method_info, write_report

    task = recipe.task
    measurer: Measurer = load_reference(task.measurer)
    settings = recipe.doc.benchmark
    max_length = recipe.doc.data.max_length
    bench_key = measurement_key(recipe, data)
    runtimes = measurer.runtimes()
    candidates = select_stages(recipe, results, runtimes)
    unmeasured = [
        {"step": step.folder.name, "variant": v.name, "file": v.file, "reason": reason}
        for step in results
        for v in step.artifact.variants
        if v.runtime not in runtimes and not step.skipped
        for reason in [measurer.not_measured(v)]
    ]
    for entry in unmeasured:
        log.info(f"  {entry['step']}:{entry['variant']}: {entry['reason']}")
    did_not_run = skipped_steps(results)
    for entry in did_not_run:
        log.info(f"  {entry['step']}: skipped: {entry['reason']}")
    log.info(f"benchmarking {len(candidates)} stages on {len(data.test)} test rows")
    selected: list[tuple[StepResult, str]] = []
    stages: list[dict[str, Any]] = []
    for step, name in candidates:
        variant = step.artifact.variant(name)
        cache = step.folder / f"eval-{variant.name}-{bench_key}.json"
        measured: dict[str, Any] | None = None
        if cache.is_file():
            measured = json.loads(cache.read_text())
        if measured is None or measured.get("artifact_key") != step.artifact.key:
            label = f"{step.folder.name}:{variant.name}"
            log.info(f"  evaluating {label} ({variant.runtime}, {variant.target})")
            try:
                measured = measurer.measure(
                    step.artifact, variant, data, settings, max_length, progress, task, cache
                )
            except ModelLoadError as exc:
                if variant.runtime != "tensorrt":
                    raise
                # e.g. an engine built for another GPU architecture than this one
                log.info(f"  {label}: not run: {exc}")
                entry = {"step": step.folder.name, "variant": name, "file": variant.file}
                unmeasured.append({**entry, "reason": f"TensorRT engine: {exc}"})
                continue
            measured["artifact_key"] = step.artifact.key
            write_json_atomic(cache, measured)
        selected.append((step, name))
        stages.append(
            {
                "stage": step.name,
                "variant": variant.name,
                "step": step.folder.name,
                "file": variant.file,
                "artifact_key": step.artifact.key,
                "pass_seconds": step.manifest.get("seconds"),
                **measurer.stage_facts(step, variant),
                **{k: v for k, v in measured.items() if k != "artifact_key"},
            }
        )
    measurer.finish(stages, [step.folder for step, _ in selected], data, settings)
    timed = _timed(measurer, selected, data, settings, bench_key, out, task)
    for stage, figures in zip(stages, timed, strict=True):
        stage.update(figures)
    method = method_info(settings, max_length)
    method.update(
        task=task.name,
        input_kind=task.input_kind,
        recipe=str(recipe.file),
        recipe_name=recipe.name,
        model=recipe.doc.model.source,
        max_length=max_length,
        data={"source": data.source, "test_rows": len(data.test), "key": data.key},
        **measurer.method(selected[0][0], data, settings, task),
    )
    report = measurer.build(stages, method, unmeasured, did_not_run)
    render, draw, terminal = measurer.renderers()
    written = write_report(report, out, plot=settings.plot, render=render, draw=draw)
    log.info(terminal(report))
    log.info("report: " + ", ".join(str(p) for p in written))
    return report


def _timed(
    measurer: Measurer,
    selected: list[tuple[StepResult, str]],
    data: Dataset,
    settings: BenchmarkSettings,
    bench_key: str,
    out: Path,
    task: Task,
) -> list[dict[str, Any]]:
    """Speed figures of the selected stages, measured together (cached for this exact set)."""
    labels = [f"{step.folder.name}:{name}" for step, name in selected]
    key = hash_json([bench_key, [(step.artifact.key, name) for step, name in selected]])
    cache = out / f"{measurer.timing_name}-{key}.json"
    if cache.is_file():
        cached: dict[str, Any] = json.loads(cache.read_text())
        return [cached[label] for label in labels]
    pairs = {
        label: (step.artifact, step.artifact.variant(name))
        for label, (step, name) in zip(labels, selected, strict=True)
    }
    measured = measurer.time(pairs, data, settings, task)
    write_json_atomic(cache, measured)
    return [measured[label] for label in labels]
