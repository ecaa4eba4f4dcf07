"""Token arrays: fixed latency shapes and the parity batches exports are checked on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compress.text.tokens import fixed_shape_batch, parity_batches


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_fixed_shape_batch(tokenizer: Any) -> None:
    texts = ["good", "the movie was great and the story was very fun and the actor was fine"]
    feeds = fixed_shape_batch(tokenizer, texts, batch_size=5, sequence_length=8)
    assert set(feeds) == {"input_ids", "attention_mask", "token_type_ids"}
    for value in feeds.values():
        assert value.shape == (5, 8)
        assert value.dtype == np.int64
    mask = feeds["attention_mask"]
    assert mask[0].sum() == 3  # [CLS] good [SEP], then padding
    assert mask[1].sum() == 8  # truncated
    assert (feeds["input_ids"][2] == feeds["input_ids"][0]).all()  # texts repeat
    assert feeds["input_ids"][0, 1] == tokenizer.convert_tokens_to_ids("good")


def test_fixed_shape_batch_needs_texts(tokenizer: Any) -> None:
    with pytest.raises(ValueError):
        fixed_shape_batch(tokenizer, [], batch_size=1, sequence_length=8)


def test_parity_batches_mix_lengths_and_pad_one_to_max_length(tokenizer: Any) -> None:
    texts = ["good", "the film was very dull and the plot was weak", "fun"] * 4
    batches = parity_batches(tokenizer, texts, 16)
    assert [len(b["input_ids"]) for b in batches] == [8, 4, 2]
    assert batches[-1]["input_ids"].shape == (2, 16)  # padded to max_length
    assert batches[0]["input_ids"].shape[1] < 16  # padded to its own longest text
