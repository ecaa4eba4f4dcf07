"""The run's benchmark step: measure its stages against the original model, write the report.

The original is the model a user had before compressing: the output of the
leading passes that do not compress (fine-tuning), else the input model, in
PyTorch FP32. Each stage's measurement is cached in its step folder, keyed by the
benchmark settings and data, so `compress report` re-renders without
re-measuring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.artifacts import StepResult, hash_json, write_json_atomic
from compress.data import Dataset
from compress.errors import ModelLoadError
from compress.tasks.base import load_reference

if TYPE_CHECKING:
    from compress.benchmark.settings import BenchmarkSettings
    from compress.recipe import Recipe
    from compress.tasks import Task


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
    settings = recipe.doc.benchmark.model_dump(mode="json")
    return hash_json(
        {"settings": settings, "data": data.key, "max_length": recipe.doc.data.max_length}
    )


def make_report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> dict[str, Any]:
    """Measure every selected stage and write report.json/.md/.png.

    Accuracy, size and parameters are measured per stage and cached in its step
    folder. Latency is measured for all stages together, interleaved in blocks
    (`measure_interleaved`), so the ratios to the original hold on a busy
    machine; it is cached in the run folder for exactly this set of stages.
    """
    from compress.benchmark.measure import SCHEDULE
    from compress.benchmark.report import build_report, method_info, render_terminal, write_report
    from compress.benchmark.sanity import majority_baseline

    task = recipe.task
    if task.measurer is None:
        raise ValueError(f"{task.name} runs are reported by their own engine ({task.report})")
    measurer = load_reference(task.measurer)
    settings = recipe.doc.benchmark
    max_length = recipe.doc.data.max_length
    bench_key = measurement_key(recipe, data)
    stages: list[dict[str, Any]] = []
    runtimes = measured_runtimes()
    candidates = select_stages(recipe, results, runtimes)
    unmeasured = not_run(results, runtimes)
    for entry in unmeasured:
        print(f"  {entry['step']}:{entry['variant']}: {entry['reason']}")
    did_not_run = skipped_steps(results)
    for entry in did_not_run:
        print(f"  {entry['step']}: skipped: {entry['reason']}")
    print(f"benchmarking {len(candidates)} stages on {len(data.test)} test rows")
    selected = []
    for step, name in candidates:
        variant = step.artifact.variant(name)
        cache = step.folder / f"eval-{variant.name}-{bench_key}.json"
        measured: dict[str, Any] | None = None
        if cache.is_file():
            measured = json.loads(cache.read_text())
        if measured is None or measured.get("artifact_key") != step.artifact.key:
            label = f"{step.folder.name}:{variant.name}"
            print(f"  evaluating {label} ({variant.runtime}, {variant.target})")
            try:
                measured = measurer.measure(
                    step.artifact, variant, data, settings, max_length, progress, task, cache
                )
            except ModelLoadError as exc:
                if variant.runtime != "tensorrt":
                    raise
                # e.g. an engine built for another GPU architecture than this one
                print(f"  {label}: not run: {exc}")
                entry = {"step": step.folder.name, "variant": name, "file": variant.file}
                unmeasured.append({**entry, "reason": f"TensorRT engine: {exc}"})
                continue
            measured["artifact_key"] = step.artifact.key
            write_json_atomic(cache, measured)
        selected.append((step, name))
        stage = {
            "stage": step.name,
            "variant": variant.name,
            "step": step.folder.name,
            "file": variant.file,
            "artifact_key": step.artifact.key,
            "pass_seconds": step.manifest.get("seconds"),
            "macs_per_token": step.artifact.meta.get("macs_per_token"),
            "macs_per_example": step.artifact.meta.get("macs_per_example"),
            "quantization_error": _top_errors(step, variant.file),
            **{k: v for k, v in measured.items() if k != "artifact_key"},
        }
        stages.append(stage)
    measurer.finish(stages, [step.folder for step, _ in selected], data, settings)
    for stage, latency in zip(
        stages, _latency(selected, data, settings, bench_key, out, task), strict=True
    ):
        stage["latency"] = latency
    method = method_info(settings, max_length)
    method["task"] = task.name
    method["input_kind"] = task.input_kind
    method["accuracy_name"] = measurer.accuracy_name
    method["example_shape"] = _example_shape(task, selected[0][0], settings.sequence_length)
    method["latency_schedule"] = SCHEDULE
    method["data"] = {"source": data.source, "test_rows": len(data.test), "key": data.key}
    scored = data.test.head(settings.eval_samples)
    method["majority_class"] = majority_baseline(scored.labels, data.label_names)
    method["recipe"] = str(recipe.file)
    report = build_report(stages, method, not_run=unmeasured, skipped=did_not_run)
    written = write_report(report, out, plot=settings.plot)
    print(render_terminal(report))
    print("report: " + ", ".join(str(p) for p in written))
    return report


def _latency(
    selected: list[tuple[StepResult, str]],
    data: Dataset,
    settings: BenchmarkSettings,
    bench_key: str,
    out: Path,
    task: Task,
) -> list[dict[str, Any]]:
    """Latency of the selected stages, measured together (cached for this exact set)."""
    from compress.benchmark.stage import interleaved_latency

    labels = [f"{step.folder.name}:{name}" for step, name in selected]
    key = hash_json([bench_key, [(step.artifact.key, name) for step, name in selected]])
    cache = out / f"latency-{key}.json"
    if cache.is_file():
        cached: dict[str, Any] = json.loads(cache.read_text())
        return [cached[label] for label in labels]
    sizes = ", ".join(f"b{b}" for b in settings.batch_sizes)
    print(f"  timing {len(labels)} stages interleaved ({sizes}, {settings.repetitions} calls each)")
    stages = {
        label: (step.artifact, step.artifact.variant(name))
        for label, (step, name) in zip(labels, selected, strict=True)
    }
    measured = interleaved_latency(stages, data.test.inputs, settings, task)
    write_json_atomic(cache, measured)
    return [measured[label] for label in labels]


def _example_shape(task: Task, step: StepResult, sequence_length: int) -> str:
    from compress.benchmark.stage import load_processor

    return task.shape(load_processor(step.artifact, task), sequence_length)


def _top_errors(step: StepResult, file: str | None, k: int = 5) -> list[dict[str, Any]] | None:
    """The layers that add the most INT8 error in this file (from the quantize manifest)."""
    errors = step.manifest.get("metrics", {}).get("quantization_error", {})
    ranked = errors.get(file) if isinstance(errors, dict) and file else None
    return list(ranked[:k]) if isinstance(ranked, list) and ranked else None
