"""Independent checks of block-quantized (INT4/INT8 weight-only) ONNX files, from the specs.

Like `tests.qdq_reference`, every check returns a list of problems (empty: the file passed),
and `mutate` makes the corrupted copies that prove each check can fail.

- `nbits_weight_problems`: every MatMulNBits / GatherBlockQuantized weight (4-bit nibbles,
  low nibble first; 8-bit bytes; packed zero points or the default 2^(bits-1)) rebuilt and
  compared with the FP32 source within s/2 per element.
- `nbits_layer_problems`: every MatMulNBits of a file (FP32 compute) computes x @ W_rebuilt,
  and differs from x @ W_fp32 by at most |x| @ (s/2): the layer's scale-derived bound.
- `float_rebuild`: the file with every block-quantized node replaced by its float equivalent
  (rebuilt weights): running it beside the file proves the rest of the graph is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tests.qdq_reference import REL, _arrays, _attrs, _replace, exact_session, run


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Rows of `count` integers from their packed bytes (4 bits: low nibble first)."""
    rows = packed.reshape(packed.shape[0], -1).astype(np.int64)
    if bits == 8:
        return rows[:, :count]
    both = np.stack([rows & 0x0F, rows >> 4], axis=-1).reshape(rows.shape[0], -1)
    return both[:, :count]


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """The inverse of `unpack` for rows of an even count."""
    values = values.astype(np.uint8)
    if bits == 8:
        return values
    return (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)


def _blocked(
    arrays: dict[str, np.ndarray], node: onnx.NodeProto, rows: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q [rows, k], scale [rows, blocks], zero [rows, blocks]) of a block-quantized node."""
    attrs = _attrs(node)
    bits, block = int(attrs["bits"]), int(attrs["block_size"])
    blocks = -(-k // block)
    data_input = 1 if node.op_type == "MatMulNBits" else 0
    data, scales = arrays[node.input[data_input]], arrays[node.input[2]]
    zero_name = node.input[3] if len(node.input) > 3 else ""
    q = unpack(data.reshape(rows, -1), bits, k)
    scale = scales.astype(np.float64).reshape(rows, blocks)
    if zero_name and zero_name in arrays:
        zero = arrays[zero_name]
        if zero.dtype == np.uint8:
            zero = unpack(zero.reshape(rows, -1), bits, blocks)
        zero = zero.astype(np.float64).reshape(rows, blocks)
    else:
        zero = np.full((rows, blocks), 2 ** (bits - 1), np.float64)
    return q, scale, zero


def _per_element(values: np.ndarray, block: int, k: int) -> np.ndarray:
    return np.repeat(values, block, axis=1)[:, :k]


def _corrections(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """MatMulNBits output -> the [blocks, N] per-block correction added to it (HQQ's float
    zero points made integer, `compress.llm.zero_points`)."""
    arrays = _arrays(model)
    out = {}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] in arrays:
            table = arrays[node.input[0]].astype(np.float64)
            mm = next(n for n in model.graph.node if node.output[0] in n.input)
            add = next(n for n in model.graph.node if mm.output[0] in n.input)
            out[next(i for i in add.input if i != mm.output[0])] = table
    return out


def nbits_weights(
    model: onnx.ModelProto, corrected: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Node name -> (rebuilt float weight as the source stores it, |scale| per element, the
    integer per element). MatMulNBits: [K, N] (what `x @ W` reads); GatherBlockQuantized:
    [rows, K]. `corrected`: with HQQ's per-block correction added (the node's output then
    has it added by the nodes after it). Symmetric RTN writes negative scales: a step is |s|."""
    arrays = _arrays(model)
    for node in model.graph.node:  # a shared head's bytes, reshaped to rows for the Gather
        if node.op_type == "Reshape" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    corrections = _corrections(model) if corrected else {}
    out = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMulNBits", "GatherBlockQuantized"):
            continue
        attrs = _attrs(node)
        block = int(attrs["block_size"])
        if node.op_type == "MatMulNBits":
            k, n = int(attrs["K"]), int(attrs["N"])
            q, scale, zero = _blocked(arrays, node, n, k)
        else:
            rows = arrays[node.input[2]].shape[0]
            k = arrays[node.input[2]].shape[1] * block
            q, scale, zero = _blocked(arrays, node, rows, k)
        s = _per_element(scale, block, k)
        w = (q - _per_element(zero, block, k)) * s
        if node.output[0] in corrections:  # + the block's constant correction
            w = w + _per_element(corrections[node.output[0]].T, block, k)
        if node.op_type == "MatMulNBits":
            w, s, q = w.T, s.T, q.T
        out[node.name] = (w, np.abs(s), q)
    return out


def _fp32_matmul_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """MatMul / Gather node name -> its constant weight (a tied head: the embedding's
    transpose)."""
    arrays = _arrays(model)
    made_by = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and node.input[0] in arrays:
            out[node.name] = arrays[node.input[0]]
        if node.op_type != "MatMul":
            continue
        if node.input[1] in arrays:
            out[node.name] = arrays[node.input[1]]
            continue
        transpose = made_by.get(node.input[1])
        if (
            transpose is not None
            and transpose.op_type == "Transpose"
            and (transpose.input[0] in arrays)
        ):
            out[node.name] = arrays[transpose.input[0]].T
    return out


def _source_name(node: onnx.NodeProto) -> str:
    """The FP32 node a block-quantized node replaced."""
    if node.op_type == "GatherBlockQuantized":
        return node.name.removesuffix("_shared")
    for suffix in ("_Q4", "_Q8", "_compressed_matmul"):
        if node.name.endswith(suffix):
            return node.name[: -len(suffix)]
    return node.name


def nbits_weight_problems(
    fp32_path: Path, nbits_path: Path, clipped: bool = False, only: Sequence[str] = ()
) -> list[str]:
    """Every block-quantized weight of `nbits_path` within s/2 of its FP32 source per element
    (round to nearest). `clipped`: a method that clips (HQQ) is held to s/2 only inside the
    integer range, not at its ends; `only`: the nodes whose name
    contains one of these."""
    sources = _fp32_matmul_weights(onnx.load(str(fp32_path)))
    model = onnx.load(str(nbits_path))
    kinds = {n.name: n for n in model.graph.node}
    rebuilt = nbits_weights(model)
    problems = [] if rebuilt else [f"{nbits_path.name}: no block-quantized node"]
    for name, (w, s, q) in rebuilt.items():
        if only and not any(o in name for o in only):
            continue
        source = sources.get(_source_name(kinds[name]))
        if source is None or source.shape != w.shape:
            shape = None if source is None else source.shape
            problems.append(f"{name}: rebuilt {w.shape}, FP32 source {shape}")
            continue
        source = source.astype(np.float64)
        bound = s / 2 * (1 + 1e-3) + REL * np.abs(source)  # 1e-3: HQQ's FP16 correction
        off = np.abs(w - source) > bound
        if clipped:  # an element at an end of the integer range may have been clipped
            off &= (q > 0) & (q < 2 ** int(_attrs(kinds[name])["bits"]) - 1)
        if np.any(off):
            worst = float(np.max(np.abs(w - source)[off] / np.maximum(s[off], 1e-12)))
            problems.append(f"{name}: {int(off.sum())} elements off, up to {worst:.2f} steps")
    return problems


def float_rebuild(nbits_path: Path) -> onnx.ModelProto:
    """The file with every MatMulNBits a MatMul and every GatherBlockQuantized a Gather, of
    the rebuilt float weights (HQQ's correction nodes stay: they are plain float nodes)."""
    model = onnx.load(str(nbits_path))
    rebuilt = nbits_weights(model, corrected=False)  # the correction nodes stay in the graph
    nodes = []
    for node in model.graph.node:
        if node.name not in rebuilt:
            nodes.append(node)
            continue
        name = node.name + "/rebuilt_weight"
        model.graph.initializer.append(
            numpy_helper.from_array(rebuilt[node.name][0].astype(np.float32), name)
        )
        if node.op_type == "MatMulNBits":
            nodes.append(helper.make_node("MatMul", [node.input[0], name], list(node.output)))
        else:
            nodes.append(helper.make_node("Gather", [name, node.input[1]], list(node.output)))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def nbits_layer_problems(
    fp32_path: Path,
    nbits_path: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    only: Sequence[str] = (),
) -> list[str]:
    """Every MatMulNBits of `nbits_path`, run with FP32 compute (accuracy_level 0, so no
    activation is quantized), on `feeds`: its output is x @ W_rebuilt within float rounding,
    and within |x| @ (s/2) of x @ W_fp32 (round-to-nearest weights; `only`: the nodes whose
    name contains one of these)."""
    sources = _fp32_matmul_weights(onnx.load(str(fp32_path)))
    model = onnx.load(str(nbits_path))
    rebuilt = nbits_weights(model)
    corrections = _corrections(model)
    layers = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    for node in layers:
        kept = [a for a in node.attribute if a.name != "accuracy_level"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("accuracy_level", 0)])
    names = sorted({t for n in layers for t in (n.input[0], n.output[0])})
    sess = exact_session(model, names)
    problems: list[str] = []
    for feed in feeds:
        values = run(sess, feed)
        for node in layers:
            x = values[node.input[0]].astype(np.float64)
            w, s, _ = rebuilt[node.name]
            got = values[node.output[0]].astype(np.float64)
            if node.output[0] in corrections:  # the correction is added after the node
                table = corrections[node.output[0]]
                w = w - np.repeat(table, w.shape[0] // len(table), axis=0)
            rounding = 1e-4 * (np.abs(x) @ np.abs(w)) + 1e-5
            if np.any(np.abs(got - x @ w) > rounding):
                problems.append(f"{node.name}: not x @ the rebuilt weights")
            source = sources.get(_source_name(node))
            if source is None or source.shape != w.shape or node.output[0] in corrections:
                continue
            if only and not any(o in node.name for o in only):
                continue
            bound = np.abs(x) @ (s / 2) * (1 + REL) + rounding
            if np.any(np.abs(got - x @ source.astype(np.float64)) > bound):
                problems.append(f"{node.name}: off the FP32 layer by more than s/2 per weight")
    return sorted(set(problems))


# -- mutations: the bugs the checks are there to catch -------------------------------------


def _first_nbits(model: onnx.ModelProto, square: bool) -> onnx.NodeProto:
    """The first MatMulNBits (`square`: with K == N)."""
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            attrs = _attrs(node)
            if not square or attrs["K"] == attrs["N"]:
                return node
    raise LookupError("MatMulNBits")


def mutate(path: Path, out: Path, how: str) -> Path:
    """A copy of `path` with one bug in its first MatMulNBits weight, saved to `out`.

    `how`: "scale x2" (a scale doubled), "transpose" (a square quantized weight transposed),
    "swap nibbles" (high and low nibble swapped in every byte)."""
    model = onnx.load(str(path))
    arrays = _arrays(model)
    node = _first_nbits(model, square=how == "transpose")
    data, scales = node.input[1], node.input[2]
    if how == "scale x2":
        _replace(model, scales, arrays[scales] * np.float32(2))
    elif how == "swap nibbles":
        b = arrays[data]
        _replace(model, data, ((b & 0x0F) << 4 | (b >> 4)).astype(np.uint8))
    elif how == "transpose":
        attrs = _attrs(node)
        n, k, bits = int(attrs["N"]), int(attrs["K"]), int(attrs["bits"])
        q = unpack(arrays[data].reshape(n, -1), bits, k)
        _replace(model, data, pack(q.T, bits).reshape(arrays[data].shape))
    else:
        raise ValueError(how)
    onnx.save(model, str(out))
    return out
