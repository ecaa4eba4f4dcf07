"""Labelled data for the tasks: types, loaders, offline defaults and splits."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """One split of a text-classification dataset: texts and integer labels."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def head(self, n: int | None) -> Split:
        """The first `n` examples (all when `n` is None)."""
        if n is None or n >= len(self.texts):
            return self
        return Split(self.texts[:n], self.labels[:n])


@dataclass
class Dataset:
    """Train/validation/test splits plus the label names (index = label id)."""

    label_names: list[str]
    train: Split
    validation: Split
    test: Split
    source: str
    key: str
    notes: dict[str, object] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]
