from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from compress.artifacts import Artifact, Variant
from compress.benchmark.settings import BenchmarkSettings
from compress.benchmark.stage import benchmark_variant
from compress.data import Dataset, Split
from compress.tasks import get_task

TEXT = get_task("text-classification")

SETTINGS = BenchmarkSettings(
    batch_sizes=[1, 4], sequence_length=16, threads=1, warmup=1, repetitions=5, eval_batch_size=4
)
LATENCY_KEYS = {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput_per_s"}


def _alone(artifact: Artifact, variant: Variant, texts: list[str], tokenizer: Any) -> list[int]:
    """Label ids predicted here, one text at a time, by the model itself (transformers or a
    plain ONNX Runtime session), not through compress's runtimes."""
    if variant.runtime == "torch":
        import torch
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(artifact.path).eval()

        def logits(feeds: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(
            str(artifact.file(variant)), providers=["CPUExecutionProvider"]
        )

        def logits(feeds: dict[str, np.ndarray]) -> np.ndarray:
            return np.asarray(session.run(None, feeds)[0])

    encoded = (tokenizer([t], truncation=True, max_length=32, return_tensors="np") for t in texts)
    return [int(logits(dict(e)).argmax()) for e in encoded]


@pytest.mark.parametrize("which", ["hf_artifact", "onnx_artifact", "int8_artifact"])
def test_benchmark_variant(
    which: str, request: pytest.FixtureRequest, split: Split, tokenizer: Any
) -> None:
    """Every field of a variant's result: its accuracy is the one computed here from the
    model's own predictions, latency has each batch size with ordered percentiles."""
    artifact: Artifact = request.getfixturevalue(which)
    variant = artifact.variants[0]
    result = benchmark_variant(
        artifact, variant, split, SETTINGS, max_length=32, progress=False, task=TEXT
    )
    one_by_one = {"eval_batch_size"} if which == "int8_artifact" else set()  # dynamic INT8
    assert set(result) == {
        "runtime",
        "precision",
        "target",
        "accuracy",
        "macro_f1",
        "n_eval",
        "latency",
        "size_bytes",
        "parameters",
        *one_by_one,
    }
    assert (result["runtime"], result["precision"], result["target"]) == (
        variant.runtime,
        variant.precision,
        variant.target,
    )
    assert result["n_eval"] == len(split)
    predicted = _alone(artifact, variant, split.texts, tokenizer)
    assert result["accuracy"] == float(np.mean(np.asarray(predicted) == split.labels))
    assert 0.0 <= result["macro_f1"] <= 1.0
    assert set(result["latency"]) == {"b1", "b4"}
    for stats in result["latency"].values():
        assert set(stats) == LATENCY_KEYS
        assert 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
        assert stats["throughput_per_s"] > 0
    assert result["size_bytes"] > 0 and result["parameters"] > 0
    json.dumps(result)  # JSON-able


def test_benchmark_variant_eval_samples_and_predictions(
    hf_artifact: Artifact, split: Split, tokenizer: Any
) -> None:
    """eval_samples scores the split's first N texts; keep_predictions returns their label ids,
    those the model itself predicts."""
    settings = SETTINGS.model_copy(update={"eval_samples": 3, "batch_sizes": [2]})
    variant = hf_artifact.variants[0]
    result = benchmark_variant(
        hf_artifact,
        variant,
        split,
        settings,
        max_length=32,
        progress=False,
        task=TEXT,
        keep_predictions=True,
    )
    assert result["n_eval"] == 3
    assert set(result["latency"]) == {"b2"}
    assert result["predictions"] == _alone(hf_artifact, variant, split.texts[:3], tokenizer)


def test_interleaved_latency_of_several_stages(
    hf_artifact: Artifact, onnx_artifact: Artifact, split: Split
) -> None:
    from compress.benchmark.stage import interleaved_latency

    settings = BenchmarkSettings(batch_sizes=[1, 2], sequence_length=8, warmup=1, repetitions=5)
    stages = {
        "torch": (hf_artifact, hf_artifact.variants[0]),
        "onnx": (onnx_artifact, onnx_artifact.variants[0]),
    }
    out = interleaved_latency(stages, split.texts, settings, TEXT)
    assert set(out) == {"torch", "onnx"}
    for figures in out.values():
        assert set(figures) == {"b1", "b2"}
        b1 = figures["b1"]
        assert 0 < b1["p50_ms"] <= b1["p90_ms"] <= b1["p99_ms"]
        assert b1["throughput_per_s"] > 0


def test_a_file_for_tensorrt_is_scored_as_its_graph_computes(
    tiny_qdq: Artifact, tiny_dataset: Dataset
) -> None:
    """Its accuracy is the exact Q/DQ arithmetic's; this CPU's INT8 kernels' is a CPU figure."""
    import onnxruntime as ort

    from compress.benchmark.evaluate import evaluate
    from compress.benchmark.runtimes import open_runtime, scored_exactly

    variant = tiny_qdq.variants[0]
    assert scored_exactly(variant)
    result = benchmark_variant(
        tiny_qdq, variant, tiny_dataset.test, SETTINGS, 32, False, task=TEXT, measure=False
    )
    assert "executed exactly" in result["accuracy_method"]
    assert set(result["cpu_kernels"]) == {"accuracy", "macro_f1"}
    exact = open_runtime(tiny_qdq, variant, 1, TEXT, exact=True)
    try:
        level = exact.session.get_session_options().graph_optimization_level  # type: ignore[attr-defined]
        assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        tokenizer = TEXT.load_processor(tiny_qdq.path)
        scores = evaluate(exact, tokenizer, tiny_dataset.test, 32, 64, False, TEXT)
    finally:
        exact.close()
    assert result["accuracy"] == scores["accuracy"]


def test_dynamic_int8_is_scored_one_example_at_a_time(
    int8_artifact: Artifact, onnx_artifact: Artifact, split: Split
) -> None:
    """Its activation scales depend on the batch and its padding: scored as served, alone."""
    from compress.benchmark.evaluate import evaluate
    from compress.benchmark.runtimes import open_runtime, scored_one_by_one

    variant = int8_artifact.variants[0]
    assert scored_one_by_one(int8_artifact, variant)
    assert not scored_one_by_one(onnx_artifact, onnx_artifact.variants[0])
    result = benchmark_variant(
        int8_artifact, variant, split, SETTINGS, 32, False, task=TEXT, measure=False
    )
    assert result["eval_batch_size"] == 1 and "accuracy_method" not in result
    runtime = open_runtime(int8_artifact, variant, 1, TEXT)
    try:
        tokenizer = TEXT.load_processor(int8_artifact.path)
        alone = evaluate(runtime, tokenizer, split, 32, 1, False, TEXT)
    finally:
        runtime.close()
    assert result["accuracy"] == alone["accuracy"] and result["macro_f1"] == alone["macro_f1"]
