"""Labels for unlabelled data: the input model's top-1 class, cached in its step folder."""

from __future__ import annotations

import logging
from dataclasses import replace

from compress.artifacts import StepResult, hash_json, read_json, write_json_atomic
from compress.data import Dataset, Split
from compress.tasks import Task

log = logging.getLogger(__name__)


def label_with_model(data: Dataset, step: StepResult, task: Task, max_length: int) -> Dataset:
    """Unlabelled data labelled with the input model's top-1 class (cached in its folder)."""
    import numpy as np

    from compress.passkit.training import predict_logits

    cache = step.folder / f"labels-{data.key}.json"
    labels = read_json(cache) if cache.is_file() else None
    if not isinstance(labels, dict):
        model, processor = task.load(str(step.artifact.path), None)
        labels = {"names": task.label_names(model)}
        for name in ("train", "validation", "test"):
            split = data.split(name)
            encoded = task.encode(processor, split.inputs, max_length)
            logits = predict_logits(model, processor, encoded, task, desc=f"label {name}")
            labels[name] = logits.argmax(-1).tolist()
        write_json_atomic(cache, labels)
    log.info(f"data: {data.source} has no labels: labelled with the input model's top-1 class")

    def relabel(name: str) -> Split:
        return Split(data.split(name).inputs, np.asarray(labels[name], dtype=np.int64))

    return replace(
        data,
        label_names=list(labels["names"]),
        key=hash_json([data.key, step.artifact.key, "top-1 labels"]),
        labelled=True,
        notes={**data.notes, "labels": "top-1 class of the input model"},
        train=relabel("train"),
        validation=relabel("validation"),
        test=relabel("test"),
    )
