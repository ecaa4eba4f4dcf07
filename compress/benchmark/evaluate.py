"""Accuracy and macro-F1 of a runtime on a labelled split."""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

from compress.benchmark.runtimes import Runtime
from compress.data import Split
from compress.errors import DataError
from compress.tasks import Task, get_task


class Evaluation(TypedDict):
    """Scores on a split; `predictions` are label ids in the split's order."""

    accuracy: float
    macro_f1: float
    n: int
    predictions: np.ndarray


def evaluate(
    runtime: Runtime,
    processor: Any,
    split: Split,
    max_length: int,
    batch_size: int,
    progress: bool,
    task: Task | None = None,
) -> Evaluation:
    """Predict every example of `split` and score the predictions.

    `processor` is the model's tokenizer or image preprocessor. Texts run in
    batches of similar token length, each batch padded to its own longest
    example (truncated at `max_length`), so padding wastes little.
    """
    from tqdm.auto import tqdm

    from compress.data.text import sorted_batches

    n = len(split)
    if n == 0:
        raise DataError("the evaluation split is empty")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    task = task or get_task("text-classification")
    encoded = task.encode(processor, split.inputs, max_length)
    predictions = np.empty(n, dtype=np.int64)
    with tqdm(total=n, disable=not progress, desc=f"evaluate {runtime.name}", unit="ex") as bar:
        for index in sorted_batches(task.lengths(encoded), batch_size):
            batch = task.collate(processor, encoded, index)
            feeds = {k: np.asarray(v.numpy()) for k, v in batch.items()}
            logits = np.asarray(runtime(feeds))
            if logits.ndim != 2 or logits.shape[0] != len(index):
                raise DataError(f"expected logits [{len(index)}, labels], got {logits.shape}")
            predictions[index] = logits.argmax(axis=-1)
            bar.update(len(index))
    labels = np.asarray(split.labels)
    return Evaluation(
        accuracy=accuracy(labels, predictions),
        macro_f1=macro_f1(labels, predictions),
        n=n,
        predictions=predictions,
    )


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"need equal, non-empty shapes ({labels.shape}, {predictions.shape})")
    return float(np.mean(labels == predictions))


def macro_f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """F1 of each class seen in labels or predictions, averaged without weights."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"need equal, non-empty shapes ({labels.shape}, {predictions.shape})")
    scores = []
    for cls in np.union1d(labels, predictions):
        tp = int(np.sum((predictions == cls) & (labels == cls)))
        fp = int(np.sum((predictions == cls) & (labels != cls)))
        fn = int(np.sum((predictions != cls) & (labels == cls)))
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of examples on which two models predict the same label."""
    return accuracy(np.asarray(a), np.asarray(b))
