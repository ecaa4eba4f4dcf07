"""ONNX Runtime's INT8 quantizers, as the `quantize` pass calls them.

`static_qdq` writes calibrated Q/DQ INT8: U8 activations / S8 weights for
ONNX Runtime on CPUs, or, with `tensorrt=True`, symmetric S8S8 Q/DQ on
MatMul/Gemm/Conv only with float biases, the explicit-quantization form
NVIDIA's ONNX parser accepts. `dynamic_int8` writes weight-only INT8 with
activations quantized on the fly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.errors import PassFailed

Method = Literal["minmax", "percentile", "entropy"]


class CalibrationReader:
    """Calibration feeds in the form ONNX Runtime's quantizer reads them, restricted to `names`."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], names: list[str]) -> None:
        self.batches = [{n: feed[n] for n in names} for feed in feeds]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def input_names(path: Path) -> list[str]:
    """The graph inputs of an ONNX file."""
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def matching_nodes(path: Path, patterns: list[str]) -> list[str]:
    """Names of the nodes of `path` that fully match one of the regexes `patterns`."""
    import onnx

    if not patterns:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    regexes = [re.compile(p) for p in patterns]
    return [n.name for n in graph.node if any(r.fullmatch(n.name) for r in regexes)]


def _calibration_method(method: Method) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]


HISTOGRAM_METHODS = ("percentile", "entropy")


def _ops_but_masks() -> list[str]:
    """ONNX Runtime's default op types for static INT8, without `Where`.

    Transformers exports build their attention mask with `Where(mask, 0, float32 min)`:
    a histogram of that constant cannot have finite bins, so histogram calibration of
    the whole graph fails ("Too many bins for data range"). Without it percentile
    calibration runs (the mask is built in float); entropy still fails on padded
    batches, whose masked scores (float32 min) overflow its symmetric histogram.
    """
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted({*QLinearOpsRegistry, *QDQRegistry} - {"Where"})


def static_qdq(
    source: Path,
    target: Path,
    reader: CalibrationReader,
    *,
    method: Method,
    percentile: float,
    per_channel: bool,
    tensorrt: bool,
    excluded: list[str],
    reduce_range: bool = False,
) -> None:
    """Calibrated Q/DQ INT8 of `source` into `target`; `excluded` nodes stay float.

    `reduce_range` quantizes weights to 7 bits, so that x86 CPUs without VNNI
    (whose U8S8 kernels add pairs of products in 16 bits) cannot saturate.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra: dict[str, object] = {"CalibPercentile": percentile}
    kwargs: dict[str, object] = {}
    if tensorrt:
        extra.update(ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
        kwargs["op_types_to_quantize"] = ["MatMul", "Gemm", "Conv"]
    elif method in HISTOGRAM_METHODS:
        kwargs["op_types_to_quantize"] = _ops_but_masks()
    reader.rewind()
    try:
        quantize_static(
            str(source),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range and not tensorrt,
            calibrate_method=_calibration_method(method),
            nodes_to_exclude=excluded,
            extra_options=extra,
            **kwargs,
        )
    except ValueError as exc:  # histogram calibration on degenerate activations
        raise PassFailed(
            f"INT8 calibration ({method}) failed on {source.name}: {exc}; "
            "try method: minmax or more calibration_samples"
        ) from None


def dynamic_int8(
    source: Path,
    target: Path,
    *,
    per_channel: bool,
    excluded: list[str],
    reduce_range: bool = False,
) -> None:
    """Weight-only INT8 of `source`, activations quantized on the fly, into `target`
    (`reduce_range`: 7-bit weights, see `static_qdq`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        nodes_to_exclude=excluded,
        # fused ONNX Runtime ops defeat shape inference; their outputs are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


@contextmanager
def quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger; keep the run readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
