"""Predictions over a split, and the scores every stage and pass is judged by.

`predict` is the one loop that feeds a split to a model (any callable from a
collated batch to logits), in batches of similar length; `evaluate` scores a
runtime with it; `accuracy` is the one definition of accuracy in compress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from compress.benchmark.runtimes import Runtime
from compress.data import Split
from compress.data.batches import sorted_batches
from compress.errors import DataError
from compress.tasks import Task

if TYPE_CHECKING:
    import torch

BatchFn = Callable[[dict[str, "torch.Tensor"]], np.ndarray]
"""`fn(batch)`: logits `[rows, labels]` for one collated batch of model inputs."""


class Evaluation(TypedDict):
    """Scores on a split; `predictions` are label ids in the split's order."""

    accuracy: float
    macro_f1: float
    n: int
    predictions: np.ndarray


def predict(
    fn: BatchFn,
    processor: Any,
    encoded: Any,
    task: Task,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "predict",
) -> np.ndarray:
    """Logits `[examples, labels]` (float32) for every encoded example, in input order.

    Texts run in batches of similar token length, each padded to its own
    longest example, so padding wastes little.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    lengths = task.lengths(encoded)
    out: np.ndarray | None = None
    with tqdm(total=len(lengths), disable=not progress, desc=desc, unit="ex") as bar:
        for index in sorted_batches(lengths, batch_size):
            logits = np.asarray(fn(task.collate(processor, encoded, index)))
            if logits.ndim != 2 or logits.shape[0] != len(index):
                raise DataError(f"expected logits [{len(index)}, labels], got {logits.shape}")
            if out is None:
                out = np.zeros((len(lengths), logits.shape[1]), dtype=np.float32)
            out[index] = logits
            bar.update(len(index))
    if out is None:
        raise DataError("no examples to predict")
    return out


def runtime_outputs(
    runtime: Runtime,
    processor: Any,
    encoded: Any,
    task: Task,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "predict",
) -> np.ndarray:
    """`runtime`'s output (logits, sentence vectors) for every encoded example, in input order."""

    def fn(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return np.asarray(runtime({k: np.asarray(v.numpy()) for k, v in batch.items()}))

    return predict(fn, processor, encoded, task, batch_size, progress, desc)


def evaluate(
    runtime: Runtime,
    processor: Any,
    split: Split,
    max_length: int,
    batch_size: int,
    progress: bool,
    task: Task,
) -> Evaluation:
    """Predict every example of `split` with `runtime` and score the predictions.

    `processor` is the model's tokenizer or image preprocessor; texts are
    truncated at `max_length`.
    """
    if len(split) == 0:
        raise DataError("the evaluation split is empty")

    encoded = task.encode(processor, split.inputs, max_length)
    desc = f"evaluate {runtime.name}"
    outputs = runtime_outputs(runtime, processor, encoded, task, batch_size, progress, desc)
    predictions = outputs.argmax(-1)
    labels = np.asarray(split.labels)
    return Evaluation(
        accuracy=accuracy(labels, predictions),
        macro_f1=macro_f1(labels, predictions),
        n=len(split),
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
