"""Data-aware weight-only INT4 with NNCF: scale estimation and AWQ, on the ONNX graph.

NNCF's weight compression runs the model in ONNX Runtime on calibration text.
Scale estimation then picks each block's scale to minimise the error of the
layer's *output* on those activations (round to nearest only looks at the
weights); AWQ first rescales input channels by their activation size, folded
into the previous projection where there is one (a gated MLP's up projection
before its down projection), so it adds no node. Zero points stay integers,
so the file runs on ONNX Runtime's fast CPU kernels, as round to nearest does.

Two gaps between NNCF 3.4 and ONNX Runtime 1.32 are bridged here:
- NNCF builds its graph from ONNX shape inference, which does not know ONNX
  Runtime's fused ops (SimplifiedLayerNormalization, GroupQueryAttention), and
  then misses the edges out of them; ONNX Runtime's symbolic shape inference
  fills them in first (the value_info it adds is dropped again after).
- NNCF writes 4-bit zero points one per byte, where ONNX Runtime's MatMulNBits
  wants them packed two per byte like the weights (it refuses the model
  otherwise): they are packed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.errors import PassFailed

if TYPE_CHECKING:
    from compress.llm.options import WeightOnlyConfig

WEIGHTED_OPS = ("MatMul", "Gemm", "Gather")  # what NNCF would compress
PROTOBUF_LIMIT = 2**31 - 1  # bytes of one serialised ModelProto (shape inference needs one)


def calibration_sequences(
    tokenizer: Any, texts: Sequence[str], samples: int, seed: int, max_length: int
) -> list[list[int]]:
    """Token ids of `samples` texts drawn from `texts` (seeded), cut at `max_length` as the
    perplexity cuts them."""
    pick = np.random.default_rng(seed).permutation(len(texts))[:samples]
    rows = tokenizer([texts[int(i)] for i in pick], truncation=True, max_length=max_length)
    return [list(r) for r in rows["input_ids"]]


def calibration_feeds(model: Any, sequences: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """One feed per token sequence for `model` (a causal LM with past inputs): batch 1, the
    whole sequence at once, every past input empty."""
    from onnx import helper

    feeds = []
    for ids in sequences:
        if not ids:
            continue
        length = len(ids)
        feed: dict[str, Any] = {}
        for graph_input in model.graph.input:
            name, tensor = graph_input.name, graph_input.type.tensor_type
            if name == "input_ids":
                feed[name] = np.asarray([ids], np.int64)
            elif name == "attention_mask":
                feed[name] = np.ones((1, length), np.int64)
            elif name == "position_ids":
                feed[name] = np.arange(length, dtype=np.int64)[None]
            elif name.startswith("past_key_values"):
                dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim]
                dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
                feed[name] = np.zeros([1, *dims[1:]], dtype)
            else:
                raise PassFailed(f"cannot calibrate: no calibration value for input {name!r}")
        feeds.append(feed)
    if not feeds:
        raise PassFailed("cannot calibrate: no calibration text has a token")
    return feeds


def pack_nncf_zero_points(model: Any) -> int:
    """Pack the one-per-byte 4-bit zero points NNCF writes (in place); returns how many."""
    from onnx import helper, numpy_helper

    from compress.llm.zero_points import pack_zero_points

    constants = {t.name: t for t in model.graph.initializer}
    packed = 0
    for node in model.graph.node:
        if node.op_type != "MatMulNBits" or len(node.input) < 4 or not node.input[3]:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        blocks = -(-attrs["K"] // attrs["block_size"])
        zero = constants[node.input[3]]
        if attrs["bits"] != 4 or list(zero.dims) != [attrs["N"], blocks]:
            continue  # already packed (or 8-bit, one a byte by definition)
        values = pack_zero_points(numpy_helper.to_array(zero), 4).reshape(attrs["N"], -1)
        zero.CopyFrom(numpy_helper.from_array(values, zero.name))
        packed += 1
    return packed


def method_name(wo: WeightOnlyConfig) -> str:
    """How NNCF rounds: "scale_estimation", "awq+scale_estimation" or "awq+rtn"."""
    rounding = "scale_estimation" if wo.algorithm == "scale_estimation" else "rtn"
    return f"awq+{rounding}" if wo.awq else rounding


def compress_with_nncf(
    model: Any,
    nodes: list[str],
    wo: WeightOnlyConfig,
    feeds: list[dict[str, Any]],
    progress: bool = True,
    symmetric: bool = False,
) -> Any:
    """`nodes` (MatMuls of `model`) as 4-bit weights chosen by NNCF on `feeds`; every
    other weighted node is left as it is. Returns the new model. Below opset 21 NNCF writes
    MatMulNBits, from opset 21 blocked DequantizeLinear -> MatMul. `symmetric` (or
    `wo.symmetric`): zero points 0. Without `progress`, NNCF's own progress bars (printed
    to stdout) are swallowed."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from compress.quant.nncf_backend import load_nncf

    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise PassFailed(
            f"scale_estimation and awq run NNCF on the graph in memory, and its shape "
            f"inference stops at protobuf's 2 GB; this graph is {size / 1e9:.1f} GB: use "
            "algorithm rtn or hqq for it"
        )
    nncf = load_nncf()
    wanted = set(nodes)
    others = [
        n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS and n.name not in wanted
    ]
    value_info = list(model.graph.value_info)
    written_ops = ("MatMulNBits", "DequantizeLinear")
    before = sum(n.op_type in written_ops for n in model.graph.node)
    try:
        shaped = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as exc:  # the inference raises bare Exceptions on unknown ops
        raise PassFailed(f"NNCF needs every tensor's shape; shape inference failed: {exc}") from exc
    sym = symmetric or wo.symmetric
    mode = nncf.CompressWeightsMode.INT4_SYM if sym else nncf.CompressWeightsMode.INT4_ASYM
    quiet = logging.getLogger("nncf")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its per-layer bit-width table
    bars = contextlib.redirect_stdout(sys.stdout if progress else io.StringIO())
    try:
        with bars:
            compressed = nncf.compress_weights(
                shaped,
                mode=mode,
                ratio=1.0,
                group_size=wo.block_size,
                all_layers=True,
                awq=wo.awq,
                scale_estimation=wo.algorithm == "scale_estimation",
                dataset=nncf.Dataset(feeds),
                subset_size=len(feeds),
                ignored_scope=nncf.IgnoredScope(names=others),
            )
    finally:
        quiet.setLevel(level)
    del compressed.graph.value_info[:]
    compressed.graph.value_info.extend(value_info)
    pack_nncf_zero_points(compressed)
    written = sum(n.op_type in written_ops for n in compressed.graph.node) - before
    if written != len(wanted):
        raise PassFailed(f"NNCF compressed {written} of the {len(wanted)} MatMuls it was given")
    return compressed
