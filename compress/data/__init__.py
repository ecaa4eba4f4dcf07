"""Labelled data for the tasks: types, loaders, offline defaults and splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Split:
    """One split of a classification dataset: inputs and integer labels.

    `inputs` holds texts (text classification) or images (image
    classification: an `ImageList` of arrays or files).
    """

    inputs: Sequence[Any]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def texts(self) -> list[str]:
        """The inputs of a text split."""
        if self.inputs and not isinstance(self.inputs[0], str):
            raise TypeError("this split holds images, not texts")
        return list(self.inputs)

    def head(self, n: int | None) -> Split:
        """The first `n` examples (all when `n` is None)."""
        if n is None or n >= len(self.inputs):
            return self
        return Split(self.inputs[:n], self.labels[:n])

    def take(self, index: Sequence[int] | np.ndarray) -> Split:
        """The examples at `index`, in that order."""
        picked = [int(i) for i in index]
        take = getattr(self.inputs, "take", None)
        inputs = take(picked) if take is not None else [self.inputs[i] for i in picked]
        return Split(inputs, self.labels[picked])


@dataclass
class Dataset:
    """Train/validation/test splits plus the label names (index = label id).

    `labelled=False` marks data without labels of its own (the offline photos):
    the run labels it with the input model's predictions, so accuracy reads as
    top-1 agreement with the original model.
    """

    label_names: list[str]
    train: Split
    validation: Split
    test: Split
    source: str
    key: str
    notes: dict[str, object] = field(default_factory=dict)
    labelled: bool = True

    def split(self, name: str) -> Split:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]
