"""Batches of example indices by length, so little compute goes to padding."""

from __future__ import annotations

import numpy as np


def bucketed_batches(
    lengths: list[int], batch_size: int, rng: np.random.Generator, bucket: int = 50
) -> list[np.ndarray]:
    """Shuffled batches of indices whose members have similar lengths.

    Indices are shuffled, cut into chunks of `bucket` batches, sorted by length
    inside each chunk, split into batches, and the batch order is shuffled.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches: list[np.ndarray] = []
    lens = np.asarray(lengths)
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lens[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Batches of indices in length order (for inference; order does not matter)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
