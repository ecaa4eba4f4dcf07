"""Bring a fake-quant export into the Q/DQ form TensorRT and `check_qdq` expect.

`torch.onnx.export` of a fake-quantized model writes every quantizer as a
QuantizeLinear -> DequantizeLinear pair, weights included, with scales and
zero points as `Constant` nodes. This module turns constants into
initializers and folds each weight's QuantizeLinear into an int8 initializer,
so the file holds int8 weights behind a DequantizeLinear (a quarter of the
size) exactly as post-training quantization writes them. The arithmetic is
unchanged: the folded weights are the values the QuantizeLinear computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx


def _quantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear (round half to even, saturate) for int8/uint8 zero points."""
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * x.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    info = np.iinfo(zero.dtype)
    q = np.rint(x.astype(np.float32) / scale) + zero.astype(np.int32)
    return np.asarray(np.clip(q, info.min, info.max).astype(zero.dtype))


def fold_qdq_constants(model: onnx.ModelProto) -> dict[str, int]:
    """Constants -> initializers, then weight QuantizeLinear -> int8 initializers (in place)."""
    from onnx import numpy_helper

    graph = model.graph
    inits: dict[str, Any] = {t.name: t for t in graph.initializer}
    values: dict[str, np.ndarray] = {}

    def const(name: str) -> np.ndarray | None:
        if name not in values and name in inits:
            values[name] = numpy_helper.to_array(inits[name])
        return values.get(name)

    kept, moved, folded = [], 0, 0
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and len(node.attribute) == 1
            and node.attribute[0].name == "t"
        ):
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            moved += 1
            continue
        if node.op_type == "Identity" and const(node.input[0]) is not None:
            values[node.output[0]] = values[node.input[0]]
            moved += 1
            continue
        if node.op_type == "QuantizeLinear":
            x, scale = const(node.input[0]), const(node.input[1])
            zero = const(node.input[2]) if len(node.input) > 2 else None
            if x is not None and scale is not None and zero is not None:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                values[node.output[0]] = _quantize(x, scale, zero, axis)
                folded += 1
                continue
        kept.append(node)
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    new_inits = [t for t in graph.initializer if t.name in used]
    for name, value in values.items():
        if name in used and name not in inits:
            new_inits.append(numpy_helper.from_array(np.asarray(value), name))
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    return {"constants_to_initializers": moved, "weight_quantizers_folded": folded}
