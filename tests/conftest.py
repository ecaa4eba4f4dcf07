"""Shared fixtures: a tiny BERT classifier built from a config, and a tiny labelled dataset.

Unit tests use these; the end-to-end tests use the real offline model and data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from compress.data import Dataset, Split

POSITIVE = ["good", "great", "fine", "fun", "loved", "superb"]
NEGATIVE = ["bad", "awful", "boring", "dull", "hated", "weak"]
FILLER = "the a movie film plot actor story scene was is very not really quite and but".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNUSED = "zebra quantum harbor ##ing ##s violin".split()  # in the vocabulary, never in the texts


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Short sentences whose label is whether a positive word occurs in them."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 9))))
        words.insert(
            int(rng.integers(0, len(words) + 1)), rng.choice(POSITIVE if label else NEGATIVE)
        )
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def build_tiny_classifier(folder: Path, layers: int = 4) -> Path:
    """Save a randomly initialised 4-layer BERT classifier and its tokenizer to `folder`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    words = SPECIAL + POSITIVE + NEGATIVE + FILLER + UNUSED
    vocab.write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    train, y_train = make_texts(96, 1)
    val, y_val = make_texts(32, 2)
    test, y_test = make_texts(32, 3)
    return Dataset(
        label_names=["neg", "pos"],
        train=Split(train, y_train),
        validation=Split(val, y_val),
        test=Split(test, y_test),
        source="tiny",
        key="tiny",
    )
