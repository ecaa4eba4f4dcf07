"""ONNX Runtime sessions on the CPU, their feeds, and the parity check every export passes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.errors import ExportParityError

if TYPE_CHECKING:
    import onnxruntime


def session(path: Path, threads: int = 0, exact: bool = False) -> onnxruntime.InferenceSession:
    """A CPU inference session (`threads=0`: ONNX Runtime's default).

    `exact=True` turns graph optimizations off, so a Q/DQ model runs its
    QuantizeLinear/DequantizeLinear nodes as written (float arithmetic)
    instead of fused INT8 kernels, whose rounding differs between CPUs
    (AVX2, AVX-512 VNNI): its outputs then depend on the graph, not the CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def feeds_for(sess: onnxruntime.InferenceSession, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """The subset of `batch` the session declares, as NumPy arrays of the declared types."""
    out = {}
    for declared in sess.get_inputs():
        value = batch[declared.name]
        array = value.numpy() if hasattr(value, "numpy") else value
        out[declared.name] = np.asarray(array, dtype=_ORT_TYPES.get(declared.type, np.int64))
    return out


def check_parity(
    what: str,
    model: Any,
    onnx_path: Path,
    batches: list[dict[str, Any]],
    atol: float,
    exact: bool = False,
) -> float:
    """Max |logit difference| between `model` and the ONNX file; raises above `atol`.

    With `exact`, the file runs without graph optimizations (see `session`):
    a Q/DQ file is then checked as a graph, the same on every CPU.
    """
    import torch

    sess = session(onnx_path, exact=exact)
    worst = 0.0
    model.eval()
    with torch.inference_mode():
        for batch in batches:
            output = model(**batch)
            expected = getattr(output, "logits", output).float().numpy()
            got = sess.run(None, feeds_for(sess, batch))[0]
            if got.shape != expected.shape:
                raise ExportParityError(what, {"logits shape": float("inf")}, atol)
            worst = max(worst, float(np.abs(got - expected).max()))
    if not np.isfinite(worst) or worst > atol:
        raise ExportParityError(what, {"logits": worst}, atol)
    return worst


def kernel_deviation(onnx_path: Path, batches: list[dict[str, Any]]) -> dict[str, float]:
    """How far this CPU's fused INT8 kernels move a Q/DQ file's logits from its exact arithmetic.

    Information, not a check: the kernels differ between CPUs (AVX2's U8S8
    kernels can saturate, AVX-512 VNNI's do not), the graph does not.
    """
    fused, exact = session(onnx_path), session(onnx_path, exact=True)
    worst, agree, rows = 0.0, 0, 0
    for batch in batches:
        got = fused.run(None, feeds_for(fused, batch))[0]
        ref = exact.run(None, feeds_for(exact, batch))[0]
        worst = max(worst, float(np.abs(got - ref).max()))
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        rows += len(ref)
    return {"max_logit_diff": worst, "argmax_agreement": agree / max(1, rows)}
