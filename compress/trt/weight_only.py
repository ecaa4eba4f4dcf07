"""Checks that a weight-only quantized ONNX model is in the form TensorRT's parser takes.

Weight-only INT4 for TensorRT (opset 21): each quantized weight is a constant
`DequantizeLinear` of INT4 values in blocks (`block_size`, `axis` 0: along the
MatMul's input axis) with positive scales and zero point 0 (absent or all
zeros), feeding a `MatMul` (or, for a token embedding, a `Gather`); INT8
weights may be dequantized per output column (per token row for a lookup).
No activation is quantized (no `QuantizeLinear`), and no ONNX Runtime
contrib operator (MatMulNBits) remains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_OPSET = 21  # DequantizeLinear takes block_size and int4 from opset 21


@dataclass
class WeightOnlyReport:
    """What the weight paths of a model are, and what is wrong with them for TensorRT."""

    int4_matmuls: int = 0
    int8_matmuls: int = 0
    float_matmuls: int = 0
    int4_gathers: int = 0
    int8_gathers: int = 0
    block_sizes: set[int] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.int4_matmuls > 0

    def summary(self) -> str:
        blocks = ", ".join(map(str, sorted(self.block_sizes))) or "-"
        return (
            f"weight-only: {self.int4_matmuls} INT4 MatMuls (block {blocks}), "
            f"{self.int8_matmuls} INT8, {self.float_matmuls} float, "
            f"{self.int4_gathers + self.int8_gathers} quantized embedding lookups "
            f"({self.int8_gathers} INT8)"
        )


def is_weight_only(model: Any) -> bool:
    """Whether `model` dequantizes constant weights and quantizes no activation."""
    ops = {n.op_type for n in model.graph.node}
    return "DequantizeLinear" in ops and "QuantizeLinear" not in ops


def check_weight_only(model: Any) -> WeightOnlyReport:
    """Inspect every DequantizeLinear and constant-weight MatMul of `model` (a ModelProto)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for port, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, port))
    report = WeightOnlyReport()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        report.problems.append(f"model: opset {opset}; blocked INT4 DequantizeLinear needs 21")
    for node in graph.node:
        where = node.name or node.op_type
        if node.domain not in ("", "ai.onnx"):
            report.problems.append(f"{where}: {node.domain}.{node.op_type} is a contrib operator")
            continue
        if node.op_type == "QuantizeLinear":
            report.problems.append(f"{where}: quantizes an activation (weight-only has none)")
            continue
        if node.op_type != "DequantizeLinear":
            continue
        values = constants.get(node.input[0])
        if values is None or node.input[1] not in constants:
            report.problems.append(f"{where}: its values and scale must be constants")
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        block, axis = int(attrs.get("block_size", 0)), int(attrs.get("axis", 1))
        uses = consumers.get(node.output[0], [])
        kinds = {(user.op_type, port) for user, port in uses}
        scale = numpy_helper.to_array(constants[node.input[1]])
        if (scale <= 0).any():
            report.problems.append(f"{where}: scales must be positive")
        if len(node.input) > 2 and node.input[2]:
            zero = constants.get(node.input[2])
            if zero is None or np.any(numpy_helper.to_array(zero) != 0):
                report.problems.append(f"{where}: zero point is not 0 (asymmetric)")
        if values.data_type == TensorProto.INT4:
            if not block:
                report.problems.append(f"{where}: INT4 without block_size (per-channel INT4)")
            report.block_sizes.add(block)
            if kinds == {("Gather", 0)}:
                report.int4_gathers += 1
            elif kinds == {("MatMul", 1)} and axis == 0:
                report.int4_matmuls += len(uses)
            else:
                shown = sorted(f"{op}[{port}]" for op, port in kinds)
                report.problems.append(
                    f"{where}: INT4 block axis {axis} feeding {shown}; wants MatMul input 1 "
                    "with blocks along axis 0, or a Gather"
                )
        elif values.data_type == TensorProto.INT8 and not block:
            if kinds == {("Gather", 0)}:
                report.int8_gathers += 1
            elif kinds == {("MatMul", 1)}:
                report.int8_matmuls += len(uses)
            else:
                report.problems.append(f"{where}: INT8 weight feeding {sorted(kinds)}")
        else:
            kind = TensorProto.DataType.Name(values.data_type)
            report.problems.append(f"{where}: dequantizes {kind} (block {block})")
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in constants:
            report.float_matmuls += 1
    return report
