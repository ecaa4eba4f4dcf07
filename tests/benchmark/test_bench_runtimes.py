from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compress.artifacts import Artifact, Variant
from compress.benchmark.runtimes import (
    OrtRuntime,
    Runtime,
    TorchRuntime,
    count_parameters,
    model_size_bytes,
    open_runtime,
)
from compress.errors import ModelLoadError, UserError
from compress.tasks import get_task
from compress.text.tokens import fixed_shape_batch

TEXT = get_task("text-classification")


def test_torch_and_onnxruntime_give_the_same_logits(
    tokenizer: Any, hf_artifact: Artifact, onnx_artifact: Artifact
) -> None:
    texts = ["the movie was great", "bad", "the plot was very dull and boring"]
    feeds = fixed_shape_batch(tokenizer, texts, batch_size=3, sequence_length=12)
    torch_rt = open_runtime(hf_artifact, hf_artifact.variants[0], 1, TEXT)
    ort_rt = open_runtime(onnx_artifact, onnx_artifact.variants[0], 1, TEXT)
    try:
        assert isinstance(torch_rt, TorchRuntime) and isinstance(torch_rt, Runtime)
        assert isinstance(ort_rt, OrtRuntime) and isinstance(ort_rt, Runtime)
        assert torch_rt.input_names == ["input_ids", "attention_mask", "token_type_ids"]
        assert sorted(ort_rt.input_names) == sorted(torch_rt.input_names)
        a, b = torch_rt(feeds), ort_rt(feeds)
        assert a.shape == b.shape == (3, 2)
        np.testing.assert_allclose(a, b, atol=1e-4)
        # extra feeds are ignored, a missing token_type_ids defaults to zeros
        partial = {k: v for k, v in feeds.items() if k != "token_type_ids"}
        np.testing.assert_allclose(ort_rt({**partial, "extra": feeds["input_ids"]}), b, atol=1e-6)
    finally:
        torch_rt.close()
        ort_rt.close()


def test_parameters(
    hf_artifact: Artifact, onnx_artifact: Artifact, int8_artifact: Artifact
) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(hf_artifact.path)
    expected = sum(p.numel() for p in model.parameters())
    assert count_parameters(hf_artifact, hf_artifact.variants[0], TEXT) == expected
    # the exported graph holds the same weights (its int64 constants are not weights)
    assert count_parameters(onnx_artifact, onnx_artifact.variants[0], TEXT) == expected
    # int8 weights count, plus their scales and zero points
    int8 = count_parameters(int8_artifact, int8_artifact.variants[0], TEXT)
    assert expected < int8 < expected * 1.01


def test_sizes(
    hf_artifact: Artifact, onnx_artifact: Artifact, int8_artifact: Artifact, tmp_path: Path
) -> None:
    folder = hf_artifact.path
    hf = model_size_bytes(hf_artifact, hf_artifact.variants[0])
    assert hf == (folder / "model.safetensors").stat().st_size
    fp32 = model_size_bytes(onnx_artifact, onnx_artifact.variants[0])
    assert fp32 == (folder / "model.onnx").stat().st_size
    int8 = model_size_bytes(int8_artifact, int8_artifact.variants[0])
    assert int8 < fp32


def test_size_counts_external_data(onnx_artifact: Artifact, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(onnx_artifact.file(onnx_artifact.variants[0])))
    onnx.save_model(
        model,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    artifact = Artifact(
        "onnx", tmp_path, "ext", [Variant("fp32", "onnxruntime", "fp32", "cpu", "ext.onnx")]
    )
    variant = artifact.variants[0]
    graph_bytes = (tmp_path / "ext.onnx").stat().st_size
    data_bytes = (tmp_path / "ext.onnx.data").stat().st_size
    assert data_bytes > graph_bytes
    assert model_size_bytes(artifact, variant) == graph_bytes + data_bytes
    assert count_parameters(artifact, variant, TEXT) == count_parameters(
        onnx_artifact, onnx_artifact.variants[0], TEXT
    )


def test_hf_size_ignores_trainer_files(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"x" * 100)
    (tmp_path / "training_args.bin").write_bytes(b"x" * 7)
    artifact = Artifact("hf", tmp_path, "k", [Variant("fp32", "torch", "fp32", "portable")])
    assert model_size_bytes(artifact, artifact.variants[0]) == 100


def test_open_runtime_errors(tmp_path: Path) -> None:
    missing = Artifact(
        "onnx", tmp_path, "k", [Variant("x", "onnxruntime", "fp32", "cpu", "no.onnx")]
    )
    with pytest.raises(ModelLoadError):
        open_runtime(missing, missing.variants[0], 1, TEXT)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    broken = Artifact(
        "onnx", tmp_path, "k", [Variant("x", "onnxruntime", "fp32", "cpu", "bad.onnx")]
    )
    with pytest.raises(ModelLoadError):
        open_runtime(broken, broken.variants[0], 1, TEXT)
    odd = Variant("x", "tvm", "fp32", "cpu", "bad.onnx")  # type: ignore[arg-type]
    with pytest.raises(UserError):
        open_runtime(Artifact("onnx", tmp_path, "k", [odd]), odd, 1, TEXT)


def test_the_exact_runtime_computes_the_qdq_graph_as_written(
    tiny_qdq: Artifact, tiny_onnx: Artifact
) -> None:
    """`OrtRuntime(exact=True)` on a Q/DQ file runs with graph optimizations off and gives the
    logits of ONNX's own reference evaluator of that graph (QuantizeLinear rounding and all),
    which differ visibly from the FP32 model's."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    variant = tiny_qdq.variants[0]
    path = tiny_qdq.file(variant)
    tokenizer = TEXT.load_processor(tiny_qdq.path)
    texts = ["the movie was great fun", "bad dull plot", "zebra"]
    feeds = fixed_shape_batch(tokenizer, texts, batch_size=3, sequence_length=12)
    exact = open_runtime(tiny_qdq, variant, 1, TEXT, exact=True)
    try:
        assert isinstance(exact, OrtRuntime) and exact.name == "onnxruntime-exact"
        level = exact.session.get_session_options().graph_optimization_level
        assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        logits = exact(feeds)
    finally:
        exact.close()
    graph = onnx.load(str(path))
    for opset in graph.opset_import:  # the reference implements DequantizeLinear from opset 19
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 19)
    names = [i.name for i in graph.graph.input]
    reference = ReferenceEvaluator(graph).run(None, {n: feeds[n] for n in names})[0]
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-6)
    portable = next(v for v in tiny_onnx.variants if v.target == "portable")
    fp32 = open_runtime(tiny_onnx, portable, 1, TEXT)
    try:
        assert np.abs(fp32(feeds) - reference).max() > 1e-5  # the INT8 arithmetic shows
    finally:
        fp32.close()
