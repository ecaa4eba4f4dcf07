"""Checks that an INT8 ONNX model is in the Q/DQ form TensorRT accepts.

TensorRT wants explicit, symmetric INT8 quantization: every QuantizeLinear /
DequantizeLinear pair with an int8 zero point equal to 0, weights quantized per
output channel, and no int32 (bias) dequantization (NVIDIA's parser refuses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class QdqReport:
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    per_channel_weights: int = 0
    per_tensor_weights: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.dequantize_nodes > 0


def check_qdq(path: Path) -> QdqReport:
    """Inspect every Q/DQ node of the model at `path`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=True)
    inits = {t.name: t for t in model.graph.initializer}
    report = QdqReport()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.op_type == "QuantizeLinear":
            report.quantize_nodes += 1
        else:
            report.dequantize_nodes += 1
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            data_type = inits[node.input[0]].data_type
            if data_type == onnx.TensorProto.INT32:
                report.problems.append(
                    f"{node.name}: dequantizes int32 (a quantized bias); TensorRT takes only "
                    "int8/uint8/fp8/int4 here: keep biases in float (QuantizeBias: False)"
                )
                continue
        if len(node.input) < 3 or node.input[2] not in inits:
            report.problems.append(f"{node.name}: no constant zero point")
            continue
        zero_point = numpy_helper.to_array(inits[node.input[2]])
        if zero_point.dtype != np.int8:
            report.problems.append(f"{node.name}: zero point is {zero_point.dtype}, not int8")
        elif np.any(zero_point != 0):
            report.problems.append(f"{node.name}: zero point is not 0 (asymmetric)")
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.ndim == 0 or scale.size == 1:
                report.per_tensor_weights += 1
            else:
                report.per_channel_weights += 1
    return report
