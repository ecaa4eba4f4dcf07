"""Float zero points (HQQ) rewritten into integer ones plus an exact per-block correction.

HQQ fits a float zero point per block: w = s * (q - z). ONNX Runtime's
MatMulNBits takes such zero points, but only its integer-zero-point path has
the fast CPU kernels (on SmolLM2-135M the float file decoded 7x slower).
Split z = r + f with r = round(z), an integer in the kernel's range, and the
remainder f: w = s * (q - r) - s * f. The first term is a MatMulNBits with
integer (packed) zero points; the second is constant over each block of
`block_size` inputs, so x @ W = MatMulNBits(x) + blocksum(x) @ C with C[b, n] =
-s[n, b] * f[n, b], a (K / block_size) x N matrix: blocksum is a small MatMul with a
0/1 block indicator, shared by the MatMuls that read the same input, and C is stored in
FP16 (2 bytes a block where the float zero point took 4). The quantized
weights and scales stay bit for bit what HQQ chose; only rounding of the
correction differs from the float-zero-point file.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _attr(node: Any, name: str, default: int = 0) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def pack_zero_points(zero: np.ndarray, bits: int) -> np.ndarray:
    """Integer zero points [N, blocks] as MatMulNBits stores them (4 bits: two a byte)."""
    zero = zero.astype(np.uint8)
    if bits == 8:
        return zero.reshape(-1)
    if zero.shape[1] % 2:
        zero = np.concatenate([zero, np.zeros((zero.shape[0], 1), np.uint8)], axis=1)
    packed: np.ndarray = (zero[:, 0::2] | (zero[:, 1::2] << 4)).reshape(-1)
    return packed


def integer_zero_points(model: Any) -> int:
    """Rewrite every MatMulNBits of `model` (ModelProto, in place) that has float zero points;
    returns how many were rewritten."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    sums: dict[tuple[str, int, int], str] = {}  # (input, blocks, block size) -> its block sums
    done = 0
    out_nodes: list[Any] = []
    dropped: set[str] = set()
    for node in graph.node:
        out_nodes.append(node)
        if node.op_type != "MatMulNBits" or len(node.input) < 4 or node.input[3] not in inits:
            continue
        zp_init = inits[node.input[3]]
        if zp_init.data_type != TensorProto.FLOAT or any(node.input[4:]):
            continue  # integer already, FP16 (its own kernels), or g_idx / bias: left as is
        k, n = _attr(node, "K"), _attr(node, "N")
        bits, block = _attr(node, "bits", 4), _attr(node, "block_size")
        if not k or not n or not block or k % block:
            continue
        blocks = k // block
        scale = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32).reshape(n, blocks)
        zero = numpy_helper.to_array(zp_init).astype(np.float32).reshape(n, blocks)
        rounded = np.clip(np.round(zero), 0, 2**bits - 1)
        correction = (-scale * (zero - rounded)).T.astype(np.float16)  # [blocks, N]
        name = node.name or node.output[0]
        packed = numpy_helper.from_array(pack_zero_points(rounded, bits), f"{node.input[3]}_uint")
        graph.initializer.append(packed)
        dropped.add(node.input[3])
        node.input[3] = packed.name
        key = (node.input[0], blocks, block)
        if key not in sums:  # block sums as one small MatMul: x @ P, P[i, b] = (i // block == b)
            sums[key] = f"{name}/block_sums"
            indicator = f"block_indicator_{k}x{blocks}"
            if indicator not in inits:
                eye = np.repeat(np.eye(blocks, dtype=np.float32), block, axis=0)
                inits[indicator] = numpy_helper.from_array(eye, indicator)
                graph.initializer.append(inits[indicator])
            out_nodes[-1:-1] = [
                helper.make_node(
                    "MatMul", [node.input[0], indicator], [sums[key]], f"{name}/BlockSums"
                )
            ]
        table = numpy_helper.from_array(correction, f"{name}/correction")
        graph.initializer.append(table)
        output = node.output[0]
        node.output[0] = f"{output}/integer"
        out_nodes.extend(
            [
                helper.make_node(
                    "Cast", [table.name], [f"{name}/correction32"], f"{name}/Cast", to=1
                ),
                helper.make_node(
                    "MatMul", [sums[key], f"{name}/correction32"], [f"{name}/offset"], f"{name}/C"
                ),
                helper.make_node(
                    "Add", [node.output[0], f"{name}/offset"], [output], f"{name}/Add"
                ),
            ]
        )
        done += 1
    del graph.node[:]
    graph.node.extend(out_nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name not in dropped or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return done
