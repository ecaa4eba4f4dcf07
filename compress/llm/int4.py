"""Weight-only quantization of an ONNX causal LM with ONNX Runtime's MatMulNBits quantizer.

Three groups of weights, each quantized in its own call so each has its own
bits and method: the decoder layers' MatMuls (`algorithm` at `bits`), the LM
head MatMul (`lm_head_bits`: 8, or 4 where it is most of the weights; round to nearest,
scale estimation or GPTQ) and the token embedding's
Gather (`embedding_bits`, GatherBlockQuantized). MatMuls become `MatMulNBits`
nodes (blocks of `block_size` weights along the input axis, a scale and zero
point per block), which ONNX Runtime's CPU kernels run without ever holding
the float weights. HQQ's float zero points are then rewritten into integer
ones plus an exact per-block correction (`compress.llm.zero_points`), the form
the fast CPU kernels take. The data-aware methods (scale estimation, AWQ) are
NNCF's, run on calibration text (`compress.llm.calibrated`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from compress.errors import PassFailed
from compress.llm.export import head_outputs, save_onnx

if TYPE_CHECKING:
    from compress.llm.options import WeightOnlyConfig


def _tied_head(model: Any) -> tuple[Any, Any] | None:
    """The LM head MatMul and the Transpose of the embedding it reads (None: not tied)."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    outputs = head_outputs(graph)  # logits, or a softcap's input
    head = next((n for n in graph.node if n.op_type == "MatMul" and set(n.output) & outputs), None)
    if head is None or head.input[1] in constants:
        return None
    transpose = producers.get(head.input[1])
    if transpose is None or transpose.op_type != "Transpose" or transpose.input[0] not in constants:
        return None
    return head, transpose


def untie_lm_head(model: Any) -> str | None:
    """Give a tied LM head its own weight initializer, so the quantizer can see it.

    optimum exports a tied head as `MatMul(x, Transpose(embedding))`; the
    Transpose is folded into an initializer here. Returns the embedding
    initializer's name when the head was tied to it (None: not tied).
    """
    from onnx import numpy_helper

    found = _tied_head(model)
    if found is None:
        return None
    head, transpose = found
    graph = model.graph
    embedding: str = transpose.input[0]
    tensor = next(t for t in graph.initializer if t.name == embedding)
    weight = numpy_helper.to_array(tensor).T.copy()
    graph.initializer.append(numpy_helper.from_array(weight, "lm_head.weight_transposed"))
    head.input[1] = "lm_head.weight_transposed"
    if not any(transpose.output[0] in n.input for n in graph.node):
        graph.node.remove(transpose)
    return embedding


def share_embedding(model: Any, embedding: str) -> bool:
    """Let the embedding's Gather read the quantized LM head (GatherBlockQuantized), and drop
    the float embedding: one quantized copy of a tied matrix, as in the PyTorch model.

    Only an LM head with integer zero points (round to nearest) and a block size that divides
    its input size can be shared; False when the head is not MatMulNBits of that kind.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    outputs = head_outputs(graph)  # logits, or a softcap's input
    head = next(
        (n for n in graph.node if n.op_type == "MatMulNBits" and set(n.output) & outputs), None
    )
    gather = next(
        (n for n in graph.node if n.op_type == "Gather" and n.input[0] == embedding), None
    )
    if head is None or gather is None:
        return False
    zero = constants.get(head.input[3]) if len(head.input) > 3 and head.input[3] else None
    if zero is not None and zero.data_type != TensorProto.UINT8:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    bits, block, k, n = attrs["bits"], attrs["block_size"], attrs["K"], attrs["N"]
    if k % block:
        return False
    blocks = k // block
    flat = head.input[1] + "_rows"
    shape = flat + "_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([n, k * bits // 8], np.int64), shape))
    graph.node.insert(0, helper.make_node("Reshape", [head.input[1], shape], [flat], name=flat))
    scales = constants[head.input[2]]
    scales.CopyFrom(
        numpy_helper.from_array(numpy_helper.to_array(scales).reshape(n, blocks), scales.name)
    )
    inputs = [flat, gather.input[1], scales.name]
    if zero is not None:
        packed = numpy_helper.to_array(zero).reshape(n, -1)
        zero.CopyFrom(numpy_helper.from_array(packed, zero.name))
        inputs.append(zero.name)
    shared = helper.make_node(
        "GatherBlockQuantized",
        inputs,
        list(gather.output),
        name=gather.name + "_shared",
        domain="com.microsoft",
        bits=bits,
        block_size=block,
        gather_axis=0,
        quantize_axis=1,
    )
    position = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.insert(position, shared)
    if not any(embedding in node.input for node in graph.node):
        graph.initializer.remove(constants[embedding])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return True


def set_accuracy_level(model: Any, level: int) -> int:
    """Set every MatMulNBits node's `accuracy_level` (4: INT8 activations, ONNX Runtime's
    fast CPU kernels; without it they dequantize the weights at every call). The
    quantizer's own argument does not reach the nodes its algorithm configs write."""
    from onnx import helper

    count = 0
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("accuracy_level", level)])
            count += 1
    return count


def weighted_nodes(model: Any) -> dict[str, list[Any]]:
    """The layers' MatMuls, the LM head MatMul and the embedding Gather (constant weights)."""
    constants = {t.name: t for t in model.graph.initializer}
    outputs = head_outputs(model.graph)
    inputs = {i.name for i in model.graph.input}
    groups: dict[str, list[Any]] = {"layers": [], "lm_head": [], "embedding": []}
    for node in model.graph.node:
        weight = constants.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "MatMul" and weight is not None and len(weight.dims) == 2:
            groups["lm_head" if set(node.output) & outputs else "layers"].append(node)
        elif node.op_type == "Gather" and node.input[0] in constants and node.input[1] in inputs:
            groups["embedding"].append(node)
    return groups


def head_share(model: Any) -> float:
    """The LM head's share of the weights of the MatMuls and the embedding (a tied matrix
    counted once): what `lm_head_bits: auto` goes by."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    groups = weighted_nodes(model)
    tied = _tied_head(model)
    size = {"layers": 0, "lm_head": 0, "embedding": 0}
    for key, nodes in groups.items():
        size[key] = sum(int(np.prod(dims[n.input[1 if key != "embedding" else 0]])) for n in nodes)
    if tied is not None:
        size["lm_head"] = int(np.prod(dims[tied[1].input[0]]))
        size["embedding"] = 0  # the same matrix
    total = sum(size.values())
    return size["lm_head"] / total if total else 0.0


def node_groups(model: Any) -> dict[str, list[str]]:
    """Names of the layers' MatMuls, the LM head MatMul and the embedding Gather."""
    return {key: [n.name for n in nodes] for key, nodes in weighted_nodes(model).items()}


def _algo_config(name: str, bits: int, block: int, symmetric: bool, ops: tuple[str, ...]) -> Any:
    from onnxruntime.quantization import matmul_nbits_quantizer as q

    if name == "hqq":
        return q.HQQWeightOnlyQuantConfig(block_size=block, bits=bits, op_types_to_quantize=ops)
    return q.DefaultWeightOnlyQuantConfig(
        block_size=block, is_symmetric=symmetric, bits=bits, op_types_to_quantize=ops
    )


class Group(NamedTuple):
    """One quantizer call: these nodes, by this algorithm, at these bits and block size."""

    name: str
    nodes: list[str]
    algorithm: str  # rtn, hqq, nncf (wo's data-aware method), nncf-head (scale estimation
    # of the LM head), gptq (the LM head), or embedding (a Gather, rtn)
    bits: int
    block: int
    symmetric: bool


def _quantize(model: Any, group: Group, wo: WeightOnlyConfig) -> Any:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    nodes, bits = group.nodes, group.bits
    gather = group.algorithm == "embedding"
    ops = ("Gather",) if gather else ("MatMul",)
    algorithm = "rtn" if gather else group.algorithm
    config = _algo_config(algorithm, bits, group.block, group.symmetric, ops)
    wanted = set(nodes)
    others = [n.name for n in model.graph.node if n.op_type in ops and n.name not in wanted]
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=bits,
        block_size=group.block,
        is_symmetric=group.symmetric,
        accuracy_level=wo.accuracy_level or None,
        nodes_to_include=nodes,
        nodes_to_exclude=others,  # HQQ reads only this list
        op_types_to_quantize=ops,
        quant_axes=(("Gather", 1),) if gather else None,
        algo_config=config,
    )
    quantizer.process()
    return quantizer.model.model


def _nncf_options(wo: WeightOnlyConfig, group: Group) -> WeightOnlyConfig:
    """The options NNCF runs `group` with: the layers' own, or the LM head's (its block size
    and symmetry, scale estimation without AWQ: no projection before it takes AWQ's scales)."""
    if group.algorithm != "nncf-head":
        return wo
    return wo.model_copy(
        update={
            "algorithm": "scale_estimation",
            "awq": False,
            "block_size": group.block,
            "symmetric": group.symmetric,
        }
    )


def quantize_weights(
    source: Path,
    target: Path,
    wo: WeightOnlyConfig,
    progress: bool = True,
    calibration: Sequence[Sequence[int]] = (),
) -> dict[str, Any]:
    """Write the weight-only quantized `target`; returns what was quantized and how.

    `calibration`: token sequences the data-aware methods run the model on (needed when
    `wo.calibrated`)."""
    import onnx

    from compress.llm.calibrated import (
        calibration_feeds,
        compress_with_nncf,
        gptq_matmuls,
        method_name,
    )

    if wo.uses_calibration and not calibration:
        raise PassFailed(
            f"weight_only {wo.algorithm} (awq: {wo.awq}, lm_head_algorithm: "
            f"{wo.lm_head_algorithm}) needs calibration text"
        )
    model = onnx.load(str(source))
    # a tied head is untied (its own transposed copy of the embedding) only after NNCF ran:
    # NNCF's shape inference has protobuf's 2 GB to fit in
    head_bits = wo.head_bits(head_share(model))
    found = _tied_head(model) if head_bits is not None else None
    untie = found is not None
    groups = node_groups(model)
    if found is not None:
        groups["lm_head"] = [found[0].name]
    tied: str | None = None

    def matching(patterns: list[str]) -> list[str]:
        return [n for n in groups["layers"] if any(re.fullmatch(p, n) for p in patterns)]

    keep = matching(wo.keep_float)
    wide = [n for n in matching(wo.int8_layers) if n not in keep]
    rtn = [n for n in matching(wo.rtn_layers) if n not in keep and n not in wide]
    rest = [n for n in groups["layers"] if n not in keep and n not in rtn and n not in wide]
    if not rest and not rtn and not wide:
        raise PassFailed(f"{source.name}: no MatMul with constant weights to quantize")
    block, sym = wo.block_size, wo.symmetric
    method = "nncf" if wo.calibrated else wo.algorithm
    sym = sym or wo.gptq  # GPTQ's codes have no zero point
    plan = [Group("layers", rest, method, wo.bits, block, sym)] if rest else []
    if rtn and method != "rtn":
        plan.append(Group("layers (rtn)", rtn, "rtn", wo.bits, block, sym))
    elif rtn:
        plan[0:1] = [Group("layers", rest + rtn, "rtn", wo.bits, block, sym)]
    if wide:
        plan.append(Group("layers (8-bit)", wide, "rtn", 8, block, sym))
    if head_bits is not None and groups["lm_head"]:
        head = wo.lm_head_block_size or block
        fitted = {"scale_estimation": "nncf-head"}.get(wo.lm_head_algorithm, wo.lm_head_algorithm)
        plan.append(
            Group("lm_head", groups["lm_head"], fitted, head_bits, head, wo.lm_head_symmetric)
        )
    share = wo.embedding == "shared" and untie
    if (wo.embedding == "int4" or (wo.embedding == "shared" and not share)) and groups["embedding"]:
        plan.append(Group("embedding", groups["embedding"], "embedding", 4, block, sym))
    summary: dict[str, Any] = {"kept_float": keep, "groups": {}}
    quiet = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for group in tqdm(plan, desc="weight-only", disable=not progress):
            if untie and tied is None and group.algorithm != "nncf":
                tied = untie_lm_head(model)
            start = time.perf_counter()
            algorithm = {
                "embedding": "rtn",
                "nncf": method_name(wo),
                "nncf-head": "scale_estimation",
            }.get(group.algorithm, group.algorithm)
            if group.algorithm == "gptq":
                feeds = calibration_feeds(model, calibration)
                model = gptq_matmuls(model, group.nodes, feeds, group.block)
                summary["calibration_sequences"] = len(feeds)
            elif group.algorithm in ("nncf", "nncf-head"):
                feeds = calibration_feeds(model, calibration)
                model = compress_with_nncf(
                    model, group.nodes, _nncf_options(wo, group), feeds, progress
                )
                summary["calibration_sequences"] = len(feeds)
            else:
                model = _quantize(model, group, wo)
            summary["groups"][group.name] = {
                "nodes": len(group.nodes),
                "bits": group.bits,
                "block_size": group.block,
                "symmetric": group.symmetric,
                "algorithm": algorithm,
                "seconds": round(time.perf_counter() - start, 1),
            }
    finally:
        quiet.setLevel(level)
    if share and tied is not None:
        summary["embedding_shares_lm_head"] = share_embedding(model, tied)
        if not summary["embedding_shares_lm_head"]:
            raise PassFailed(
                "the LM head could not be shared with the embedding (it needs integer zero "
                "points and an lm_head_block_size that divides the hidden size); set "
                "weight_only.embedding: int4 or float, or another lm_head_block_size"
            )
    if wo.integer_zero_points:
        from compress.llm.zero_points import integer_zero_points

        summary["integer_zero_points"] = integer_zero_points(model)
    if wo.accuracy_level:
        set_accuracy_level(model, wo.accuracy_level)
    save_onnx(model, target)
    return summary
