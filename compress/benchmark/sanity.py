"""What a report must warn about: a stage no better than always predicting the commonest class.

A model that learned nothing (it predicts the majority class for every
input) compresses losslessly: every later stage matches it, and the deltas
read +0.00. The report therefore carries the majority-class baseline of its
test rows and a warning for every stage that does not beat it.

    >>> majority_baseline(np.array([1, 1, 0, 1]), ["neg", "pos"])["accuracy"]
    0.75
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.benchmark.evaluate import macro_f1

MARGIN = 0.01
"""A stage must beat the majority-class accuracy by this much (1 point) not to be flagged."""


def majority_baseline(labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 of always predicting the most common label of `labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        raise ValueError("no labels to take a majority of")
    top = int(np.bincount(labels).argmax())
    always = np.full_like(labels, top)
    return {
        "label": names[top] if top < len(names) else str(top),
        "accuracy": float(np.mean(labels == top)),
        "macro_f1": macro_f1(labels, always),
        "rows": int(labels.size),
    }


TRAIN_MORE = (
    "it has not learned the task, so the stages below compress a model that does nothing. "
    "Train it longer or faster (fine_tune: epochs, lr) or check the labels before reading "
    "any ratio here."
)
ZERO_SHOT = (
    "the stages below compress a model that does not do the task. Check that it loaded right "
    "(its tokenizer), the prompt and the label words before reading any ratio here."
)
"""What the original's line advises: a classifier (trained) and a zero-shot generator."""


def warnings(
    stages: list[dict[str, Any]], majority: dict[str, Any] | None, advice: str = TRAIN_MORE
) -> list[str]:
    """One line per stage whose accuracy does not beat the majority class by `MARGIN`;
    the original's (the first stage's) line ends with `advice`."""
    if not majority:
        return []
    floor = float(majority["accuracy"])
    out = []
    for index, stage in enumerate(stages):
        accuracy = stage.get("accuracy")
        if not isinstance(accuracy, int | float) or accuracy > floor + MARGIN:
            continue
        always = f"always predicting '{majority['label']}' ({floor:.2%} of the test rows)"
        if index == 0:
            out.append(
                f"the original ({stage.get('stage')}) scores {accuracy:.2%}, no better than "
                f"{always}: {advice}"
            )
        else:
            out.append(
                f"{stage.get('stage')}:{stage.get('variant')} scores {accuracy:.2%}, no better "
                f"than {always}."
            )
    return out
