"""Benchmark one variant of one artifact: accuracy, latency, size and parameters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from compress.artifacts import Artifact, Variant
from compress.benchmark.evaluate import evaluate
from compress.benchmark.measure import LatencyStats, measure_interleaved, measure_latency
from compress.benchmark.runtimes import (
    count_parameters,
    model_size_bytes,
    open_runtime,
    scored_exactly,
    scored_one_by_one,
)
from compress.benchmark.settings import BenchmarkSettings
from compress.data import Split
from compress.errors import DataError
from compress.tasks import Task


def load_processor(artifact: Artifact, task: Task) -> Any:
    """The tokenizer or image preprocessor saved in the artifact folder."""
    return task.load_processor(artifact.path)


EXACT_METHOD = (
    "Q/DQ graph executed exactly (ONNX Runtime, graph optimizations off): the integer math "
    "TensorRT runs, the same on every CPU"
)


def benchmark_variant(
    artifact: Artifact,
    variant: Variant,
    split: Split,
    settings: BenchmarkSettings,
    max_length: int,
    progress: bool,
    *,
    task: Task,
    keep_predictions: bool = False,
    measure: bool = True,
) -> dict[str, Any]:
    """Measure `variant` on `split` (the test split) as `settings` asks; JSON-able.

    Latency runs use the split's first texts at each batch size, padded or
    truncated to `settings.sequence_length`. With `keep_predictions` the
    predicted label ids are added under "predictions" (for agreement). With
    `measure=False` latency is left out (see `interleaved_latency`).
    """
    if len(split) == 0:
        raise DataError("the test split is empty: nothing to benchmark on")
    processor = load_processor(artifact, task)
    scored = split.head(settings.eval_samples)
    extra: dict[str, Any] = {}
    if scored_exactly(variant):
        exact = open_runtime(artifact, variant, settings.threads, task, exact=True)
        try:
            args = (processor, scored, max_length, settings.eval_batch_size, progress, task)
            exact_scores = evaluate(exact, *args)
        finally:
            exact.close()
        extra["accuracy_method"] = EXACT_METHOD
    eval_batch = settings.eval_batch_size
    if scored_one_by_one(artifact, variant):
        eval_batch = extra["eval_batch_size"] = 1
    runtime = open_runtime(artifact, variant, settings.threads, task)
    try:
        scores = evaluate(runtime, processor, scored, max_length, eval_batch, progress, task)
        # the fused kernels' figures are this CPU's, the exact ones the file's
        if "accuracy_method" in extra:
            extra["cpu_kernels"] = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
            scores = exact_scores
        latency: dict[str, dict[str, float]] = {}
        for batch_size in settings.batch_sizes if measure else []:
            feeds = task.fixed_batch(processor, split.inputs, batch_size, settings.sequence_length)
            stats = measure_latency(partial(runtime, feeds), settings.warmup, settings.repetitions)
            latency[f"b{batch_size}"] = latency_entry(stats, batch_size)
    finally:
        runtime.close()
    result: dict[str, Any] = {
        "runtime": variant.runtime,
        "precision": variant.precision,
        "target": variant.target,
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "n_eval": scores["n"],
        "latency": latency,
        "size_bytes": model_size_bytes(artifact, variant),
        "parameters": count_parameters(artifact, variant, task),
    }
    result.update(extra)
    if keep_predictions:
        result["predictions"] = [int(p) for p in scores["predictions"]]
    return result


def latency_entry(stats: LatencyStats, batch_size: int) -> dict[str, Any]:
    """The JSON form of one batch size's latency figures."""
    entry: dict[str, Any] = {
        "p50_ms": stats.p50_ms,
        "p90_ms": stats.p90_ms,
        "p99_ms": stats.p99_ms,
        "mean_ms": stats.mean_ms,
        "std_ms": stats.std_ms,
        "throughput_per_s": stats.throughput(batch_size),
    }
    if stats.round_p50_ms:
        entry["round_p50_ms"] = list(stats.round_p50_ms)
    return entry


def interleaved_latency(
    stages: dict[str, tuple[Artifact, Variant]],
    inputs: Sequence[Any],
    settings: BenchmarkSettings,
    task: Task,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Latency of every stage, timed interleaved at each batch size (label -> batch -> figures).

    All runtimes are open at once and take turns in blocks of calls
    (`measure_interleaved`), so the ratios between stages (and to the
    original) are measured under the same machine conditions.
    """
    runtimes = {}
    try:
        for label, (artifact, variant) in stages.items():
            runtimes[label] = (
                load_processor(artifact, task),
                open_runtime(artifact, variant, settings.threads, task),
            )
        out: dict[str, dict[str, dict[str, Any]]] = {label: {} for label in stages}
        for batch_size in settings.batch_sizes:
            calls: dict[str, Callable[[], object]] = {}
            for label, (processor, runtime) in runtimes.items():
                feeds = task.fixed_batch(processor, inputs, batch_size, settings.sequence_length)
                calls[label] = partial(runtime, feeds)
            stats = measure_interleaved(calls, settings.warmup, settings.repetitions)
            for label, figures in stats.items():
                out[label][f"b{batch_size}"] = latency_entry(figures, batch_size)
        return out
    finally:
        for _, runtime in runtimes.values():
            runtime.close()
