from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from compress.artifacts import Artifact
from compress.benchmark.evaluate import accuracy, agreement, evaluate, macro_f1
from compress.benchmark.runtimes import open_runtime
from compress.data import Split
from compress.errors import DataError
from compress.tasks import get_task

TEXT = get_task("text-classification")

POSITIVE = ("good", "great", "fun", "loved")


class KeywordRuntime:
    """Predicts 1 when a positive word is among the tokens; records batch shapes."""

    name = "keyword"

    def __init__(self, tokenizer: Any) -> None:
        self.input_names = ["input_ids", "attention_mask"]
        self.positive = [tokenizer.convert_tokens_to_ids(w) for w in POSITIVE]
        self.batches: list[dict[str, np.ndarray]] = []

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append(feeds)
        hit = np.isin(feeds["input_ids"], self.positive).any(axis=1)
        return np.stack([~hit, hit], axis=1).astype(np.float32)

    def close(self) -> None:
        pass


TEXTS = [
    "good",  # pred 1, label 1
    "great film",  # pred 1, label 1
    "the plot was dull",  # pred 0, label 0
    "bad",  # pred 0, label 0
    "fun but awful",  # pred 1, label 0 -> FP for class 1
    "boring film",  # pred 0, label 1 -> FN for class 1
    "the movie was fine",  # pred 0, label 1 -> FN for class 1
    "loved it",  # pred 1, label 1
]
LABELS = [1, 1, 0, 0, 0, 1, 1, 1]


def test_evaluate_matches_hand_computation(tokenizer: Any) -> None:
    runtime = KeywordRuntime(tokenizer)
    split = Split(TEXTS, np.array(LABELS))
    result = evaluate(
        runtime, tokenizer, split, max_length=32, batch_size=3, progress=False, task=TEXT
    )
    # 5 of 8 right. Class 1: TP 3, FP 1, FN 2 -> F1 6/9. Class 0: TP 2, FP 2, FN 1 -> F1 4/7.
    assert result["n"] == 8
    assert result["accuracy"] == pytest.approx(5 / 8)
    assert result["macro_f1"] == pytest.approx((6 / 9 + 4 / 7) / 2)
    assert result["predictions"].tolist() == [1, 1, 0, 0, 1, 0, 0, 1]


def test_evaluate_batches_by_length_with_own_padding(tokenizer: Any) -> None:
    runtime = KeywordRuntime(tokenizer)
    split = Split(TEXTS, np.array(LABELS))
    evaluate(runtime, tokenizer, split, max_length=6, batch_size=3, progress=True, task=TEXT)
    # token lengths with [CLS]/[SEP]: 3 4 6 3 5 4 6 4 -> batches of lengths (3 3 4) (4 4 5) (6 6)
    assert [b["input_ids"].shape for b in runtime.batches] == [(3, 4), (3, 5), (2, 6)]
    longest = [int(b["attention_mask"].sum(axis=1).max()) for b in runtime.batches]
    assert longest == [4, 5, 6]
    assert all(b["input_ids"].dtype == np.int64 for b in runtime.batches)

    runtime.batches.clear()
    evaluate(runtime, tokenizer, split, max_length=4, batch_size=8, progress=False, task=TEXT)
    assert [b["input_ids"].shape for b in runtime.batches] == [(8, 4)]  # truncated at max_length


def test_evaluate_empty_split(tokenizer: Any) -> None:
    empty = Split([], np.array([], dtype=np.int64))
    with pytest.raises(DataError):
        evaluate(KeywordRuntime(tokenizer), tokenizer, empty, 16, 4, progress=False, task=TEXT)


def test_macro_f1_counts_classes_never_predicted() -> None:
    labels, preds = np.array([0, 1, 2, 2]), np.array([0, 1, 1, 1])
    # class 0: 1.0; class 1: TP 1, FP 2 -> 2/4; class 2: TP 0 -> 0
    assert macro_f1(labels, preds) == pytest.approx(0.5)
    assert accuracy(labels, preds) == pytest.approx(0.5)
    assert agreement(np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        accuracy(np.array([1]), np.array([1, 0]))


def test_real_runtimes_agree_with_one_by_one_predictions(
    tokenizer: Any, hf_artifact: Artifact, onnx_artifact: Artifact, split: Split
) -> None:
    torch_rt = open_runtime(hf_artifact, hf_artifact.variants[0], 1, TEXT)
    ort_rt = open_runtime(onnx_artifact, onnx_artifact.variants[0], 1, TEXT)
    try:
        a = evaluate(
            torch_rt, tokenizer, split, max_length=32, batch_size=4, progress=False, task=TEXT
        )
        b = evaluate(
            ort_rt, tokenizer, split, max_length=32, batch_size=4, progress=False, task=TEXT
        )
        single = []
        for text in split.texts:
            feeds = tokenizer([text], truncation=True, max_length=32, return_tensors="np")
            single.append(int(torch_rt(dict(feeds)).argmax(axis=-1)[0]))
    finally:
        torch_rt.close()
        ort_rt.close()
    assert a["predictions"].tolist() == single
    assert agreement(a["predictions"], b["predictions"]) == 1.0
    assert a["accuracy"] == pytest.approx(float(np.mean(np.array(single) == split.labels)))
