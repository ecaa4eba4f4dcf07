"""Sessions that run a graph exactly, and how far a CPU's fused kernels drift from it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from compress.artifacts import Artifact
from compress.data import Dataset
from compress.quant.parity import feeds_for, kernel_deviation, session
from compress.tasks import get_task

TEXT = get_task("text-classification")


def test_an_exact_session_runs_the_graph_as_written(tiny_qdq: Artifact) -> None:
    path = tiny_qdq.file(tiny_qdq.variants[0])
    level = session(path, exact=True).get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert session(path).get_session_options().graph_optimization_level != level


def test_kernel_deviation_is_rounding_for_float_and_measured_for_int8(
    tiny_onnx: Artifact, tiny_qdq: Artifact, tiny_dataset: Dataset
) -> None:
    """FP32: the fused and the exact session agree to rounding. INT8: the figures are the
    largest logit gap and the argmax agreement between the two sessions, computed here."""
    tokenizer = TEXT.load_processor(tiny_onnx.path)
    batches = TEXT.parity_batches(tokenizer, tiny_dataset.validation.inputs, 32)
    fp32 = kernel_deviation(tiny_onnx.path / "model.onnx", batches)
    assert fp32["max_logit_diff"] < 1e-4 and fp32["argmax_agreement"] == 1.0
    path = tiny_qdq.file(tiny_qdq.variants[0])
    int8 = kernel_deviation(path, batches)
    fused, exact = session(path), session(path, exact=True)
    gaps, agree, rows = [], 0, 0
    for batch in batches:
        got = fused.run(None, feeds_for(fused, batch))[0]
        ref = exact.run(None, feeds_for(exact, batch))[0]
        gaps.append(float(np.abs(got - ref).max()))
        agree, rows = agree + int((got.argmax(-1) == ref.argmax(-1)).sum()), rows + len(ref)
    assert int8["max_logit_diff"] == pytest.approx(max(gaps), abs=1e-6)
    assert int8["argmax_agreement"] == agree / rows
