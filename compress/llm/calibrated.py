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


def input_hessians(model: Any, inputs: list[str], feeds: list[dict[str, Any]]) -> dict[str, Any]:
    """X^T X of each tensor named in `inputs` (activations of `model`, [..., K]) over `feeds`."""
    import onnxruntime as ort
    from onnx import ModelProto, helper

    probe = ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in inputs)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, ["CPUExecutionProvider"])
    hessians: dict[str, Any] = {}
    for feed in feeds:
        for name, value in zip(inputs, session.run(None, feed), strict=True):
            x = value.reshape(-1, value.shape[-1]).astype(np.float64)
            hessians[name] = hessians.get(name, 0) + x.T @ x
    return hessians


def gptq_symmetric(
    weight: np.ndarray, hessian: np.ndarray, block: int, damp: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ (Frantar et al., 2022) of `weight` [N outputs, K inputs] at 4 bits, symmetric, one
    scale per `block` inputs: each input column is rounded in turn and its error spread over
    the columns not yet rounded through the inverse Hessian of the layer's inputs, so the
    *outputs* keep close to FP32. Returns the codes [N, K] (0..15, zero point 8) and the
    scales [N, K / block]. A block's scale maps its largest-magnitude weight to code 0 (as
    ONNX Runtime's round to nearest does), shrunk by up to 25% where that lowers the error."""
    n, k = weight.shape
    w = weight.astype(np.float32)
    h = hessian.astype(np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    # the inverse Hessian's upper Cholesky factor
    upper = np.linalg.cholesky(np.linalg.inv(h)).T.astype(np.float32)
    codes = np.zeros((n, k), np.uint8)
    scales = np.zeros((n, k // block), np.float32)
    lazy = max(block, 128 // block * block)
    for start in range(0, k, lazy):
        stop = min(start + lazy, k)
        part, errors = w[:, start:stop].copy(), np.zeros((n, stop - start), np.float32)
        inverse = upper[start:stop, start:stop]
        for i in range(stop - start):
            column = start + i
            if column % block == 0:
                group = part[:, i : i + block]
                extreme = group[np.arange(n), np.abs(group).argmax(axis=1)]
                best, scale = None, extreme / -8.0
                for shrink in (1.0, 0.95, 0.9, 0.85, 0.8, 0.75):
                    s = np.where(extreme == 0, 1.0, extreme / np.float32(-8 / shrink))[:, None]
                    q = np.clip(np.rint(group / s) + 8, 0, 15)
                    error = ((group - s * (q - 8)) ** 2).sum(axis=1)
                    if best is None:
                        best, scale = error, s[:, 0]
                    else:
                        better = error < best
                        best = np.where(better, error, best)
                        scale = np.where(better, s[:, 0], scale)
                scales[:, column // block] = scale
            s = scales[:, column // block]
            q = np.clip(np.rint(part[:, i] / s) + 8, 0, 15)
            codes[:, column] = q
            error = (part[:, i] - s * (q - 8)) / inverse[i, i]
            part[:, i + 1 :] -= np.outer(error, inverse[i, i + 1 :])
            errors[:, i] = error
        w[:, stop:] -= errors @ upper[start:stop, stop:]
    return codes, scales


def gptq_matmuls(model: Any, names: list[str], feeds: list[dict[str, Any]], block: int) -> Any:
    """The MatMuls `names` of `model` (in place) as 4-bit symmetric MatMulNBits chosen by
    GPTQ on the activations they read on `feeds` (NNCF 3.4 has no GPTQ for ONNX)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    wanted = set(names)
    nodes = [n for n in graph.node if n.name in wanted]
    constants = {t.name: t for t in graph.initializer}
    for node in nodes:
        k = constants[node.input[1]].dims[0]
        if k % block:
            raise PassFailed(f"GPTQ of {node.name}: block size {block} does not divide its {k}")
    hessians = input_hessians(model, list(dict.fromkeys(n.input[0] for n in nodes)), feeds)
    for node in nodes:
        tensor = constants[node.input[1]]
        weight = numpy_helper.to_array(tensor).T  # [N, K]
        n, k = weight.shape
        codes, scales = gptq_symmetric(weight, hessians[node.input[0]], block)
        packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).reshape(n, k // block, block // 2)
        stem = node.input[1]
        if not any(stem in m.input for m in graph.node if m is not node):
            graph.initializer.remove(tensor)
        graph.initializer.extend(
            [
                numpy_helper.from_array(packed.astype(np.uint8), stem + "_Q4"),
                numpy_helper.from_array(scales.astype(np.float32).reshape(-1), stem + "_scales"),
            ]
        )
        quantized = helper.make_node(
            "MatMulNBits",
            [node.input[0], stem + "_Q4", stem + "_scales"],
            list(node.output),
            name=node.name + "_Q4",
            domain="com.microsoft",
            K=k,
            N=n,
            bits=4,
            block_size=block,
        )
        position = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(position, quantized)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model
