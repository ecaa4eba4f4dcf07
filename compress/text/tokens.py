"""Texts to token arrays: encode once, pad per batch, or pad to one fixed shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

Encoded = list[dict[str, list[int]]]
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def encode(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> Encoded:
    """Token ids per text (truncated to `max_length`, not padded)."""
    out = tokenizer(texts, truncation=True, max_length=max_length)
    keys = [k for k in TOKEN_INPUTS if k in out]
    return [{k: out[k][i] for k in keys} for i in range(len(texts))]


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


def fixed_shape_batch(
    tokenizer: Any, texts: Sequence[str], batch_size: int, sequence_length: int
) -> dict[str, np.ndarray]:
    """Token arrays of shape `[batch_size, sequence_length]` (int64) from real texts.

    The first `batch_size` texts are used (repeated when there are fewer),
    each padded or truncated to exactly `sequence_length` tokens.
    """
    if not texts:
        raise ValueError("no texts to build a latency batch from")
    if batch_size < 1 or sequence_length < 1:
        raise ValueError(f"need positive sizes (got {batch_size}, {sequence_length})")
    batch = [texts[i % len(texts)] for i in range(batch_size)]
    encoded = tokenizer(
        batch,
        padding="max_length",
        truncation=True,
        max_length=sequence_length,
        return_tensors="np",
    )
    return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}


def parity_batches(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, batches: int = 4
) -> list[dict[str, Any]]:
    """Real inputs for parity checks: batches of mixed lengths, one padded to `max_length`."""
    texts = texts[: batches * 8] or ["a"]
    encoded = encode(tokenizer, texts, max_length)
    out = [
        collate(tokenizer, encoded, range(i, min(i + 8, len(texts))))
        for i in range(0, len(texts), 8)
    ]
    full = tokenizer(
        texts[:2], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    out.append(dict(full))
    return out
