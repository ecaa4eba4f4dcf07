"""Tokenize once, then batch by length so little compute goes to padding."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

Encoded = list[dict[str, list[int]]]


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> Encoded:
    """Token ids per text (truncated to `max_length`, not padded)."""
    out = tokenizer(texts, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in out]
    return [{k: out[k][i] for k in keys} for i in range(len(texts))]


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


def collate(
    tokenizer: PreTrainedTokenizerBase, encoded: Encoded, indices: Any
) -> dict[str, torch.Tensor]:
    """Pad the selected examples (right side) to their longest member, as PyTorch tensors."""
    import torch

    rows = [encoded[int(i)] for i in indices]
    width = max(len(r["input_ids"]) for r in rows)
    pad_values = {
        "input_ids": tokenizer.pad_token_id or 0,
        "attention_mask": 0,
        "token_type_ids": 0,
    }
    out = {}
    for key in rows[0]:
        array = np.full((len(rows), width), pad_values.get(key, 0), dtype=np.int64)
        for r, row in enumerate(rows):
            array[r, : len(row[key])] = row[key]
        out[key] = torch.from_numpy(array)
    return out
