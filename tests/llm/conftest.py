"""Fixtures of the text-generation tests: a tiny Llama and a labelled corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.data import Dataset, Split
from tests.conftest import make_texts
from tests.llm_fixtures import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="session")
def corpus() -> Dataset:
    splits = {
        name: make_texts(n, seed)
        for name, n, seed in (("train", 96, 1), ("val", 32, 2), ("test", 32, 3))
    }
    data = Dataset(
        label_names=["neg", "pos"],
        train=Split(*splits["train"]),
        validation=Split(*splits["val"]),
        test=Split(*splits["test"]),
        source="tiny",
        key="tiny-corpus",
    )
    data.notes.update(prompt="Review: {text} Sentiment:", label_words=["neg", "pos"])
    return data
