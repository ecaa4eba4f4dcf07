"""Weight-only INT4 of an ONNX causal LM in the form TensorRT's ONNX parser takes.

The `tensorrt` target of `quantize.weight_only`: every quantized weight is an
initializer of blocked, symmetric INT4 values (zero point 0, so none is
stored) with one positive float scale per `block_size` weights along the
input axis, read by a standard `DequantizeLinear` (opset 21: `block_size`,
`axis` 0) that feeds the `MatMul`; no ONNX Runtime contrib operator. The graph
is the portable export (optimum's attention in plain operators, the KV cache
as inputs and outputs), raised to opset 21 where it was older.

- Decoder layers: round to nearest (scale = block max |w| / 8, values clipped
  to [-8, 7]), or NNCF's scale estimation and AWQ on calibration text
  (`compress.llm.calibrated`; NNCF writes this same DequantizeLinear form at
  opset 21). NNCF starts its symmetric scales signed (the block's largest
  magnitude lands on -8, so a scale may be negative); here it starts from the
  positive block max |w| / 8 instead, so its search and its rounding see the
  grid the file keeps (`positive_start`). Any negative scale left is flipped
  (q -> -q, a -8 becomes 7) and counted.
- LM head: 4 bits (blocked, as the layers, round to nearest) or 8 bits (one
  positive scale per output column, `axis` 1), or float.
- Token embedding: its own copy, read by the `Gather` through a
  DequantizeLinear: at the LM head's bits for `embedding: shared` (8: one
  scale per token row; the CPU file's lookup reads its 8-bit head), blocked
  INT4 along the hidden axis for `int4`; or float. A tied head is untied
  first (its own transposed copy), so each DequantizeLinear feeds one kind of
  node directly.

ONNX Runtime runs the file as it is (`DequantizeLinear` then `MatMul`, with
graph optimizations off: exactly); TensorRT fuses each DequantizeLinear into
its weight-only INT4 GEMM.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.errors import PassFailed

if TYPE_CHECKING:
    from compress.llm.options import WeightOnlyConfig

OPSET = 21  # DequantizeLinear's block_size (and int4) arrived in opset 21


def with_opset(model: Any, opset: int = OPSET) -> Any:
    """`model` with its default-domain opset raised to `opset` (the ONNX version converter);
    unchanged when it is that new already."""
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return model
    return version_converter.convert_version(model, opset)


def quantize_rtn(weight: np.ndarray, block: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values in [-8, 7], positive float32 scales) of a 2-D `weight` in blocks of
    `block` along `axis`: scale = block max |w| / 8, the blocked form DequantizeLinear reads
    (scales have the weight's shape with `axis` divided by `block`).

    >>> q, s = quantize_rtn(np.array([[1.0], [-2.0]], np.float32), 2, 0)
    >>> q.ravel().tolist(), s.ravel().tolist()
    ([4, -8], [0.25])
    """
    moved = np.moveaxis(weight.astype(np.float32), axis, 0)
    rows, cols = moved.shape
    if rows % block:
        raise PassFailed(f"a weight of {rows} inputs does not split into blocks of {block}")
    blocks = moved.reshape(rows // block, block, cols)
    scale = np.abs(blocks).max(axis=1) / 8.0
    scale[scale == 0] = 1.0  # an all-zero block: any scale gives zeros
    values = np.clip(np.rint(blocks / scale[:, None, :]), -8, 7).astype(np.int8)
    return (
        np.moveaxis(values.reshape(rows, cols), 0, axis),
        np.moveaxis(scale, 0, axis).astype(np.float32),
    )


def quantize_int8_columns(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values in [-127, 127], one positive scale per output column) of a [K, N] weight."""
    scale = np.abs(weight).max(axis=0).astype(np.float32) / 127.0
    scale[scale == 0] = 1.0
    values = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return values, scale


def int4_tensor(name: str, values: np.ndarray) -> Any:
    """An INT4 initializer of `values` (int8 in [-8, 7]), two a byte, low nibble first (the
    raw layout ONNX defines; listed values would take a 32-bit field each)."""
    from onnx import TensorProto, helper

    flat = values.astype(np.int8).ravel()
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    nibbles = flat.view(np.uint8) & 0x0F
    packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
    return helper.make_tensor(name, TensorProto.INT4, values.shape, packed.tobytes(), raw=True)


def _add_dequantize(
    model: Any, node: Any, port: int, values: np.ndarray, scale: np.ndarray, axis: int, block: int
) -> None:
    """Feed input `port` of `node` from DequantizeLinear(values, scale) (INT4 when `block`)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weight = node.input[port]
    quantized = weight + ("_int4" if block else "_int8")
    scales, output = weight + "_scale", weight + "_dequantized"
    if block:
        tensor = int4_tensor(quantized, values)
    else:
        tensor = numpy_helper.from_array(values.astype(np.int8), quantized)
    graph.initializer.extend([tensor, numpy_helper.from_array(scale, scales)])
    dq = helper.make_node(
        "DequantizeLinear", [quantized, scales], [output], f"{weight}_DequantizeLinear", axis=axis
    )
    if block:
        dq.attribute.append(helper.make_attribute("block_size", block))
    for consumer in graph.node:
        for i, name in enumerate(consumer.input):
            if name == weight:
                consumer.input[i] = output
    graph.node.insert(list(graph.node).index(node), dq)
    _drop_initializer(model, weight)


def _drop_initializer(model: Any, name: str) -> None:
    if any(name in n.input for n in model.graph.node):
        return
    for tensor in model.graph.initializer:
        if tensor.name == name:
            model.graph.initializer.remove(tensor)
            return


@contextlib.contextmanager
def positive_start() -> Iterator[bool]:
    """While open, NNCF's symmetric integer scales start positive (block max |w| / 8) instead
    of signed; yields whether NNCF had the function to replace (else nothing changes)."""
    try:
        from nncf.quantization.algorithms.weight_compression import weight_lowering
    except ImportError:
        yield False
        return
    original = getattr(weight_lowering, "_calculate_signed_scale", None)
    if original is None:
        yield False
        return

    def positive(weight: Any, reduction_axes: Any, num_bits: int = 4) -> Any:
        from nncf.tensor import functions as fns

        scale = fns.max(fns.abs(weight), axis=reduction_axes, keepdims=True) / 2 ** (num_bits - 1)
        eps = fns.finfo(scale).eps
        return fns.where(scale < eps, eps, scale)

    weight_lowering._calculate_signed_scale = positive
    try:
        yield True
    finally:
        weight_lowering._calculate_signed_scale = original


def positive_scales(model: Any) -> int:
    """Flip every block of a blocked INT4 DequantizeLinear with a negative scale to a positive
    one (values negated; a -8 becomes 7), in place; returns how many values were clipped."""
    from onnx import TensorProto, helper, numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    clipped = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "DequantizeLinear" or not attrs.get("block_size"):
            continue
        values_t, scale_t = constants[node.input[0]], constants[node.input[1]]
        scale = numpy_helper.to_array(scale_t)
        if values_t.data_type != TensorProto.INT4 or not (scale < 0).any():
            continue
        block, axis = int(attrs["block_size"]), int(attrs.get("axis", 1))
        values = numpy_helper.to_array(values_t).astype(np.int8)
        sign = np.repeat(np.where(scale < 0, -1, 1).astype(np.int8), block, axis=axis)
        flipped = values * sign
        clipped += int((flipped > 7).sum())
        flipped = np.clip(flipped, -8, 7)
        values_t.CopyFrom(int4_tensor(values_t.name, flipped))
        scale_t.CopyFrom(numpy_helper.from_array(np.abs(scale), scale_t.name))
    return clipped


def _rtn_matmuls(model: Any, nodes: list[Any], bits: int, block: int) -> None:
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    for node in nodes:
        weight = numpy_helper.to_array(constants[node.input[1]])
        if bits == 4:
            values, scale = quantize_rtn(weight, block, 0)
            _add_dequantize(model, node, 1, values, scale, 0, block)
        else:
            values, scale = quantize_int8_columns(weight)
            _add_dequantize(model, node, 1, values, scale, 1, 0)


def quantize_weights_qdq(
    source: Path,
    target: Path,
    wo: WeightOnlyConfig,
    progress: bool = True,
    calibration: Sequence[Sequence[int]] = (),
) -> dict[str, Any]:
    """Write the TensorRT-form weight-only `target` from the portable export `source`;
    returns what was quantized and how (`calibration` as for `compress.llm.int4`)."""
    import onnx
    from onnx import numpy_helper

    from compress.llm.calibrated import calibration_feeds, compress_with_nncf, method_name
    from compress.llm.export import save_onnx
    from compress.llm.int4 import head_share, untie_lm_head, weighted_nodes

    if wo.calibrated and not calibration:
        raise PassFailed(f"weight_only {wo.algorithm} (awq: {wo.awq}) needs calibration text")
    model = onnx.load(str(source))
    if any(n.domain not in ("", "ai.onnx") for n in model.graph.node):
        raise PassFailed(f"{source.name} has contrib operators: quantize the portable export")
    model = with_opset(model)
    # a tied head (MatMul of the embedding's Transpose) gets its own weight: the embedding's
    # blocks run along the hidden axis for the Gather, the head's along the MatMul input
    head_bits = wo.head_bits(head_share(model))  # as the CPU file's (`lm_head_bits: auto`)
    tied = untie_lm_head(model)
    groups = weighted_nodes(model)

    def matching(patterns: list[str]) -> list[Any]:
        return [n for n in groups["layers"] if any(re.fullmatch(p, n.name) for p in patterns)]

    keep = {n.name for n in matching(wo.keep_float)}
    wide = [n for n in matching(wo.int8_layers) if n.name not in keep]
    rtn = [n for n in matching(wo.rtn_layers) if n.name not in keep and n not in wide]
    rest = [n for n in groups["layers"] if n.name not in keep and n not in wide and n not in rtn]
    if not rest and not rtn and not wide:
        raise PassFailed(f"{source.name}: no MatMul with constant weights to quantize")
    block = wo.block_size
    summary: dict[str, Any] = {
        "opset": OPSET,
        "kept_float": sorted(keep),
        "lm_head_untied": tied is not None,
        "groups": {},
    }

    def record(name: str, nodes: list[Any], bits: int, how: str, started: float) -> None:
        summary["groups"][name] = {
            "nodes": len(nodes),
            "bits": bits,
            "block_size": block if bits == 4 else None,
            "symmetric": True,
            "algorithm": how,
            "seconds": round(time.perf_counter() - started, 1),
        }

    if rest and wo.calibrated:
        started = time.perf_counter()
        feeds = calibration_feeds(model, calibration)
        with positive_start() as started_positive:
            model = compress_with_nncf(
                model, [n.name for n in rest], wo, feeds, progress, symmetric=True
            )
        summary["nncf_scales_start_positive"] = started_positive
        summary["negative_scale_values_clipped"] = positive_scales(model)
        summary["calibration_sequences"] = len(feeds)
        record("layers", rest, 4, method_name(wo), started)
        groups = weighted_nodes(model)  # NNCF returns a new graph
        rest = []
    started = time.perf_counter()
    by_name = {n.name: n for n in groups["layers"]}
    plain = [by_name[n.name] for n in rest + rtn if n.name in by_name]
    if plain:
        _rtn_matmuls(model, plain, 4, block)
        record("layers" if rest else "layers (rtn)", plain, 4, "rtn", started)
    if wide:
        started = time.perf_counter()
        _rtn_matmuls(model, [by_name[n.name] for n in wide], 8, block)
        record("layers (8-bit)", wide, 8, "rtn", started)
    if head_bits is not None and groups["lm_head"]:
        started = time.perf_counter()
        _rtn_matmuls(model, groups["lm_head"], head_bits, wo.lm_head_block_size or block)
        record("lm_head", groups["lm_head"], head_bits, "rtn", started)
    if wo.embedding != "float" and groups["embedding"]:
        # shared: the lookup at the head's bits (the CPU file's lookup reads the head itself)
        bits = (head_bits or 4) if wo.embedding == "shared" else 4
        started = time.perf_counter()
        constants = {t.name: t for t in model.graph.initializer}
        for node in groups["embedding"]:
            table = numpy_helper.to_array(constants[node.input[0]])
            if bits == 4:
                values, scale = quantize_rtn(table, block, 1)
                _add_dequantize(model, node, 0, values, scale, 1, block)
            else:  # one scale per token row
                values, scale = quantize_int8_columns(table.T)
                _add_dequantize(model, node, 0, values.T, scale, 0, 0)
        record("embedding", groups["embedding"], bits, "rtn", started)
        summary["embedding_shares_lm_head"] = False  # its own copy (a Gather reads it)
    save_onnx(model, target)
    return summary
