"""Sessions that run a graph exactly, and how far a CPU's fused kernels drift from it."""

from __future__ import annotations

import onnxruntime as ort

from compress.artifacts import Artifact
from compress.data import Dataset
from compress.quant.parity import kernel_deviation, session
from compress.tasks import get_task

TEXT = get_task("text-classification")


def test_an_exact_session_runs_the_graph_as_written(tiny_qdq: Artifact) -> None:
    path = tiny_qdq.file(tiny_qdq.variants[0])
    level = session(path, exact=True).get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert session(path).get_session_options().graph_optimization_level != level


def test_kernel_deviation_of_a_float_graph_is_rounding(
    tiny_onnx: Artifact, tiny_qdq: Artifact, tiny_dataset: Dataset
) -> None:
    tokenizer = TEXT.load_processor(tiny_onnx.path)
    batches = TEXT.parity_batches(tokenizer, tiny_dataset.validation.inputs, 32)
    fp32 = kernel_deviation(tiny_onnx.path / "model.onnx", batches)
    assert fp32["max_logit_diff"] < 1e-4 and fp32["argmax_agreement"] == 1.0
    int8 = kernel_deviation(tiny_qdq.file(tiny_qdq.variants[0]), batches)
    assert int8["max_logit_diff"] >= 0 and 0 <= int8["argmax_agreement"] <= 1
