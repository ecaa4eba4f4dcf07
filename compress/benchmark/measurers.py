"""How a run's stages are measured, per kind of model (a task names its `measurer`).

The run's report (`compress.run.report_step.make_report`) is one engine for
every task: it picks the stages, caches each stage's figures in its step
folder, times all stages together (cached for that exact set), and writes the
report. What differs is asked of the measurer (`Measurer`): which runtimes it
can run, `measure` one stage on the test split, `finish` the figures that
compare a stage with the original (the first stage), `time` the stages
interleaved, the `method` facts, and how the report is built and rendered.

`CLASSIFIER`: accuracy and macro-F1 against the labels, predictions kept for
agreement, latency at fixed shapes. `GENERATOR` (`compress.benchmark.generation`):
perplexity, the zero-shot task score and greedy tokens per stage, decode
speed and peak memory timed interleaved. `EMBEDDER`: the sentence vectors of
the test texts (and of up to `KNN_TRAIN` training texts, for kNN accuracy
where the data has labels), saved beside the stage's cache; `finish` scores each stage against the
original's vectors: fidelity (mean and 5th-percentile cosine), neighbour
recall@10 and kNN accuracy (k = 10, the `accuracy` of the report, so the CI
gate's accuracy budget reads it) with its majority-class baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compress.artifacts import Artifact, StepResult, Variant
from compress.benchmark.settings import BenchmarkSettings
from compress.data import Dataset
from compress.tasks import Task

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

KNN_TRAIN = 4000  # training texts embedded as kNN neighbours (a bounded cost per stage)
NEIGHBOURS = 10


Pairs = dict[str, tuple[Artifact, Variant]]
"""The stages to time, by label ("<step folder>:<variant>")."""


class Measurer(Protocol):
    """What the report engine asks of a kind of model (see the module docstring)."""

    timing_name: str  # the run folder's timing cache is "<timing_name>-<key>.json"

    def runtimes(self) -> tuple[str, ...]: ...

    def not_measured(self, variant: Variant) -> str: ...

    def measure(
        self,
        artifact: Artifact,
        variant: Variant,
        data: Dataset,
        settings: BenchmarkSettings,
        max_length: int,
        progress: bool,
        task: Task,
        cache: Path,
    ) -> dict[str, Any]: ...

    def stage_facts(self, step: StepResult, variant: Variant) -> dict[str, Any]: ...

    def finish(
        self, stages: list[dict[str, Any]], folders: list[Path], data: Dataset, settings: Any
    ) -> None: ...

    def time(
        self, pairs: Pairs, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, dict[str, Any]]: ...

    def method(
        self, first: StepResult, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, Any]: ...

    def build(
        self,
        stages: list[dict[str, Any]],
        method: dict[str, Any],
        not_run: list[dict[str, Any]],
        skipped: list[dict[str, Any]],
    ) -> dict[str, Any]: ...

    def renderers(
        self,
    ) -> tuple[Callable[[dict[str, Any]], str], Callable[..., Any] | None, Callable[..., str]]:
        """(Markdown, plot (None: the default), terminal) of the report."""
        ...


class ClassifierMeasurer:
    """Accuracy, macro-F1 and predictions of a classifier's stage; latency at fixed shapes."""

    accuracy_name = "Accuracy"
    timing_name = "timing"

    def runtimes(self) -> tuple[str, ...]:
        from compress.trt.runtime import engine_unavailable

        return ("torch", "onnxruntime") + (() if engine_unavailable() else ("tensorrt",))

    def not_measured(self, variant: Variant) -> str:
        from compress.trt.runtime import engine_unavailable

        return f"TensorRT engine: built, not run ({engine_unavailable() or 'not selected'})"

    def stage_facts(self, step: StepResult, variant: Variant) -> dict[str, Any]:
        return {
            "macs_per_token": step.artifact.meta.get("macs_per_token"),
            "macs_per_example": step.artifact.meta.get("macs_per_example"),
            "quantization_error": _top_errors(step, variant.file),
        }

    def time(
        self, pairs: Pairs, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, dict[str, Any]]:
        from compress.benchmark.stage import interleaved_latency

        sizes = ", ".join(f"b{b}" for b in settings.batch_sizes)
        log.info(
            f"  timing {len(pairs)} stages interleaved ({sizes}, {settings.repetitions} calls each)"
        )
        measured = interleaved_latency(pairs, data.test.inputs, settings, task)
        return {label: {"latency": latency} for label, latency in measured.items()}

    def method(
        self, first: StepResult, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, Any]:
        from compress.benchmark.measure import SCHEDULE
        from compress.benchmark.sanity import majority_baseline
        from compress.benchmark.stage import load_processor

        processor = load_processor(first.artifact, task)
        scored = data.test.head(settings.eval_samples)
        return {
            "accuracy_name": self.accuracy_name,
            "example_shape": task.shape(processor, settings.sequence_length),
            "latency_schedule": SCHEDULE,
            "majority_class": majority_baseline(scored.labels, data.label_names),
        }

    def build(
        self,
        stages: list[dict[str, Any]],
        method: dict[str, Any],
        not_run: list[dict[str, Any]],
        skipped: list[dict[str, Any]],
    ) -> dict[str, Any]:
        from compress.benchmark.report import build_report

        return build_report(stages, method, not_run=not_run, skipped=skipped)

    def renderers(
        self,
    ) -> tuple[Callable[[dict[str, Any]], str], Callable[..., Any] | None, Callable[..., str]]:
        from compress.benchmark.report import render_markdown, render_terminal

        return render_markdown, None, render_terminal

    def measure(
        self,
        artifact: Artifact,
        variant: Variant,
        data: Dataset,
        settings: BenchmarkSettings,
        max_length: int,
        progress: bool,
        task: Task,
        cache: Path,
    ) -> dict[str, Any]:
        from compress.benchmark.stage import benchmark_variant

        return benchmark_variant(
            artifact,
            variant,
            data.test,
            settings,
            max_length,
            progress,
            keep_predictions=True,
            measure=False,
            task=task,
        )

    def finish(
        self, stages: list[dict[str, Any]], folders: list[Path], data: Dataset, settings: Any
    ) -> None:
        return None


class EmbedderMeasurer(ClassifierMeasurer):
    """Sentence vectors of a stage, then fidelity, neighbour recall and kNN accuracy."""

    accuracy_name = f"kNN accuracy (k={NEIGHBOURS})"

    def measure(
        self,
        artifact: Artifact,
        variant: Variant,
        data: Dataset,
        settings: BenchmarkSettings,
        max_length: int,
        progress: bool,
        task: Task,
        cache: Path,
    ) -> dict[str, Any]:
        from compress.benchmark.runtimes import (
            count_parameters,
            model_size_bytes,
            open_runtime,
            scored_exactly,
        )
        from compress.benchmark.stage import EXACT_METHOD, load_processor

        processor = load_processor(artifact, task)
        test = data.test.head(settings.eval_samples)
        train = data.train.head(KNN_TRAIN) if data.label_names else None  # kNN needs labels
        exact = scored_exactly(variant)
        runtime = open_runtime(artifact, variant, settings.threads, task, exact=exact)
        try:
            vectors = {"test": _embed(runtime, processor, test.inputs, task, max_length, progress)}
            if train is not None:
                vectors["train"] = _embed(
                    runtime, processor, train.inputs, task, max_length, progress
                )
        finally:
            runtime.close()
        np.savez(cache.with_suffix(".npz"), **vectors)  # type: ignore[arg-type]
        result: dict[str, Any] = {
            "runtime": variant.runtime,
            "precision": variant.precision,
            "target": variant.target,
            "n_eval": len(test),
            "embedding_dim": int(vectors["test"].shape[1]),
            "vectors": cache.with_suffix(".npz").name,
            "latency": {},
            "size_bytes": model_size_bytes(artifact, variant),
            "parameters": count_parameters(artifact, variant, task),
        }
        if exact:
            result["accuracy_method"] = EXACT_METHOD
        return result

    def method(
        self, first: StepResult, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, Any]:
        if data.label_names:
            return super().method(first, data, settings, task)
        from compress.benchmark.measure import SCHEDULE
        from compress.benchmark.stage import load_processor

        processor = load_processor(first.artifact, task)  # no labels: no kNN, no majority class
        return {
            "example_shape": task.shape(processor, settings.sequence_length),
            "latency_schedule": SCHEDULE,
        }

    def finish(
        self, stages: list[dict[str, Any]], folders: list[Path], data: Dataset, settings: Any
    ) -> None:
        """Score every stage against the first (the original), from their saved vectors."""
        from compress.benchmark.embedding_scores import embedding_scores, knn_predict

        if not stages:
            return
        loaded = [
            dict(np.load(folder / s["vectors"])) for s, folder in zip(stages, folders, strict=True)
        ]
        original = loaded[0]
        test = data.test.head(settings.eval_samples)
        labels = bool(data.label_names) and "train" in original
        train_labels = data.train.head(KNN_TRAIN).labels if labels else None
        for stage, mine in zip(stages, loaded, strict=True):
            scores = embedding_scores(
                original["test"],
                mine["test"],
                train=mine.get("train") if labels else None,
                train_labels=train_labels,
                test_labels=test.labels if labels else None,
                original_train=original.get("train") if labels else None,
                k=NEIGHBOURS,
            )
            stage.update(scores)
            if train_labels is not None:
                stage["accuracy"] = scores["knn_accuracy"]
                stage["predictions"] = [
                    int(p) for p in knn_predict(mine["train"], train_labels, mine["test"])
                ]


class GenerationMeasurer:
    """Decoder LMs: perplexity, the zero-shot task, greedy tokens; decode speed and memory."""

    timing_name = "generation-timing"

    def runtimes(self) -> tuple[str, ...]:
        from compress.llm.genai import genai_available

        return ("torch", "onnxruntime") + (("onnxruntime-genai",) if genai_available() else ())

    def not_measured(self, variant: Variant) -> str:
        why = "pip install onnxruntime-genai" if "genai" in variant.runtime else "needs a GPU"
        return f"not measured ({variant.runtime}: {why})"

    def measure(
        self,
        artifact: Artifact,
        variant: Variant,
        data: Dataset,
        settings: BenchmarkSettings,
        max_length: int,
        progress: bool,
        task: Task,
        cache: Path,
    ) -> dict[str, Any]:
        from compress.benchmark.generation import quality

        return quality(artifact, variant, data, settings, max_length, progress, task)

    def stage_facts(self, step: StepResult, variant: Variant) -> dict[str, Any]:
        return {}

    def finish(
        self, stages: list[dict[str, Any]], folders: list[Path], data: Dataset, settings: Any
    ) -> None:
        return None

    def time(
        self, pairs: Pairs, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, dict[str, Any]]:
        from compress.benchmark import generation as bench

        gen = settings.generation
        log.info(f"  timing {len(pairs)} stages interleaved ({gen.rounds} rounds)")
        speed = bench.speed(pairs, data, settings, task)
        memory: dict[str, Any] = {}
        if gen.peak_memory:
            first = next(iter(pairs.values()))[0]
            tokenizer = task.load_processor(first.path)
            prompt = bench.prompts_of(tokenizer, data.test.texts, [min(gen.prompt_lengths)])
            for label, (artifact, variant) in pairs.items():
                log.info(f"  peak memory of {label}")
                memory[label] = bench.peak_memory(
                    artifact, variant, next(iter(prompt.values())), settings
                )
        return {label: {"speed": speed[label], "peak_memory": memory.get(label)} for label in pairs}

    def method(
        self, first: StepResult, data: Dataset, settings: BenchmarkSettings, task: Task
    ) -> dict[str, Any]:
        from compress.benchmark.generation import method_facts

        return method_facts(first, data, settings)

    def build(
        self,
        stages: list[dict[str, Any]],
        method: dict[str, Any],
        not_run: list[dict[str, Any]],
        skipped: list[dict[str, Any]],
    ) -> dict[str, Any]:
        from compress.benchmark.generation_report import build_generation_report

        return build_generation_report(stages, method)

    def renderers(
        self,
    ) -> tuple[Callable[[dict[str, Any]], str], Callable[..., Any] | None, Callable[..., str]]:
        from compress.benchmark.generation_report import plot, render_markdown, render_terminal

        return render_markdown, plot, render_terminal


def _top_errors(step: StepResult, file: str | None, k: int = 5) -> list[dict[str, Any]] | None:
    """The layers that add the most INT8 error in this file (from the quantize manifest)."""
    errors = step.manifest.get("metrics", {}).get("quantization_error", {})
    ranked = errors.get(file) if isinstance(errors, dict) and file else None
    return list(ranked[:k]) if isinstance(ranked, list) and ranked else None


def _embed(
    runtime: Any, processor: Any, inputs: Any, task: Task, max_length: int, progress: bool
) -> np.ndarray:
    from compress.benchmark.evaluate import runtime_outputs

    encoded = task.encode(processor, inputs, max_length)
    return runtime_outputs(runtime, processor, encoded, task, 64, progress, f"embed {runtime.name}")


CLASSIFIER = ClassifierMeasurer()
EMBEDDER = EmbedderMeasurer()
GENERATOR = GenerationMeasurer()
