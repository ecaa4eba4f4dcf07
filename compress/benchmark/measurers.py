"""How a stage's quality is measured, per kind of model (a task names its `measurer`).

The run's report (`compress.run.report_step`) is one engine for every task
that classifies or embeds: it picks the stages, caches each stage's figures
in its step folder, times all stages interleaved and writes the report. What
differs is asked of the measurer: `measure` one stage on the test split, and
`finish` the figures that compare a stage with the original (the first stage).

`CLASSIFIER`: accuracy and macro-F1 against the labels, predictions kept for
agreement. `EMBEDDER`: the sentence vectors of the test texts (and of up to
`KNN_TRAIN` training texts, for kNN accuracy where the data has labels),
saved beside the stage's cache; `finish` scores each stage against the
original's vectors: fidelity (mean and 5th-percentile cosine), neighbour
recall@10 and kNN accuracy (k = 10, the `accuracy` of the report, so the CI
gate's accuracy budget reads it) with its majority-class baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.artifacts import Artifact, Variant
from compress.benchmark.settings import BenchmarkSettings
from compress.data import Dataset
from compress.tasks import Task

if TYPE_CHECKING:
    import torch

KNN_TRAIN = 4000  # training texts embedded as kNN neighbours (a bounded cost per stage)
NEIGHBOURS = 10


class ClassifierMeasurer:
    """Accuracy, macro-F1 and predictions of a classifier's stage."""

    accuracy_name = "Accuracy"

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


class EmbedderMeasurer:
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
        train = data.train.head(KNN_TRAIN) if data.labelled else None
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
        labels = data.labelled and "train" in original
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


def _embed(
    runtime: Any, processor: Any, inputs: Any, task: Task, max_length: int, progress: bool
) -> np.ndarray:
    from compress.benchmark.evaluate import predict

    encoded = task.encode(processor, inputs, max_length)

    def fn(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return np.asarray(runtime({k: np.asarray(v.numpy()) for k, v in batch.items()}))

    return predict(fn, processor, encoded, task, 64, progress, f"embed {runtime.name}")


CLASSIFIER = ClassifierMeasurer()
EMBEDDER = EmbedderMeasurer()
