"""Which layers INT8 hurts most, and keeping the worst in float until accuracy is back.

`layer_errors` runs the FP32 and the Q/DQ INT8 ONNX file side by side on
calibration batches and, for every quantized MatMul/Gemm/Conv, measures the
normalised squared error of its output, ||int8 - fp32||^2 / ||fp32||^2. Errors
accumulate through the network, so layers are ranked by the error each one
*adds*: its output error minus the worst error already on its inputs.

`keep_float_within_budget` re-quantizes with the top-ranked layers excluded,
doubling their number (1, 2, 4, ...) until the accuracy drop is within budget
or `max_layers` stay float.

`float_within_size` chooses per layer INT8 or float under a size budget:
keeping a layer float costs its weights' extra bytes (4 instead of 1 per
element) and buys back the error it adds, so layers are taken greedily by
error bought per byte until the budget is spent (a knapsack by ratio, in the
spirit of ModelOpt's AutoQuantize, with measured error as the sensitivity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OP_TYPES = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class LayerError:
    """Quantization error of one node: on its output, and what it added to its inputs' error."""

    node: str
    op_type: str
    error: float
    added: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _with_outputs(path: Path, names: list[str]) -> Any:
    """A session on `path` that also returns the tensors `names` (no graph optimizations)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def layer_errors(fp32: Path, int8: Path, feeds: list[dict[str, np.ndarray]]) -> list[LayerError]:
    """Every quantized MatMul/Gemm/Conv of `int8`, most harmful (largest added error) first."""
    import onnx

    fp_graph = onnx.load(str(fp32), load_external_data=False).graph
    q_graph = onnx.load(str(int8), load_external_data=False).graph
    q_nodes = {n.name: n for n in q_graph.node}
    q_producers = {o: n.op_type for n in q_graph.node for o in n.output}
    q_tensors = set(q_producers) | {i.name for i in q_graph.input}
    constants = {t.name for t in fp_graph.initializer}
    layers: list[tuple[Any, list[str]]] = []
    for node in fp_graph.node:
        q_node = q_nodes.get(node.name)
        if node.op_type not in OP_TYPES or q_node is None or node.output[0] not in q_tensors:
            continue
        if not any(q_producers.get(i) == "DequantizeLinear" for i in q_node.input):
            continue  # left in float
        inputs = [i for i in node.input if i and i not in constants and i in q_tensors]
        layers.append((node, inputs))
    names = sorted({t for node, inputs in layers for t in [node.output[0], *inputs]})
    if not names:
        return []
    fp_sess, q_sess = _with_outputs(fp32, names), _with_outputs(int8, names)
    fp_index = {o.name: k for k, o in enumerate(fp_sess.get_outputs())}
    q_index = {o.name: k for k, o in enumerate(q_sess.get_outputs())}
    fp_inputs = {i.name for i in fp_sess.get_inputs()}
    q_inputs = {i.name for i in q_sess.get_inputs()}
    diff = dict.fromkeys(names, 0.0)
    norm = dict.fromkeys(names, 0.0)
    for feed in feeds:
        fp_out = fp_sess.run(None, {k: v for k, v in feed.items() if k in fp_inputs})
        q_out = q_sess.run(None, {k: v for k, v in feed.items() if k in q_inputs})
        for name in names:
            ref = np.asarray(fp_out[fp_index[name]], dtype=np.float64)
            got = np.asarray(q_out[q_index[name]], dtype=np.float64)
            diff[name] += float(((got - ref) ** 2).sum())
            norm[name] += float((ref**2).sum())
    nmse = {n: diff[n] / max(norm[n], 1e-30) for n in names}
    out = []
    for node, inputs in layers:
        upstream = max((nmse[i] for i in inputs), default=0.0)
        error = nmse[node.output[0]]
        out.append(LayerError(node.name, node.op_type, error, max(0.0, error - upstream)))
    return sorted(out, key=lambda e: e.added, reverse=True)


def float_weight_bytes(int8: Path) -> dict[str, int]:
    """Per quantized node of a Q/DQ file: the bytes its weights gain when kept float.

    A weight is an int8 initializer behind a DequantizeLinear; as float32 it
    takes 3 more bytes per element. Nodes without one (activation x activation
    MatMuls) are left out.
    """
    import onnx

    graph = onnx.load(str(int8), load_external_data=False).graph
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer if t.data_type == 3}  # INT8
    dequantized = {
        n.output[0]: sizes[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in sizes
    }
    out = {}
    for node in graph.node:
        elements = sum(dequantized.get(i, 0) for i in node.input)
        if node.op_type in OP_TYPES and elements:
            out[node.name] = 3 * elements
    return out


def float_within_size(
    errors: list[LayerError], extra_bytes: dict[str, int], budget_bytes: float
) -> list[str]:
    """The layers to keep float: most error bought back per byte first, within the budget."""
    ranked = sorted(
        (e for e in errors if e.added > 0 and e.node in extra_bytes),
        key=lambda e: e.added / extra_bytes[e.node],
        reverse=True,
    )
    chosen, spent = [], 0
    for e in ranked:
        if spent + extra_bytes[e.node] <= budget_bytes:
            chosen.append(e.node)
            spent += extra_bytes[e.node]
    return chosen


@dataclass
class Fallback:
    """What the accuracy-budget search did."""

    float_layers: list[str]
    accuracy: float
    within_budget: bool
    tries: list[dict[str, Any]]


def keep_float_within_budget(
    build: Callable[[list[str]], Path],
    evaluate: Callable[[Path], float],
    reference: float,
    budget_points: float,
    ranking: list[str],
    max_layers: int,
    log: Callable[[str], None] = log.info,
    baseline: float | None = None,
) -> Fallback:
    """Re-quantize with the first 1, 2, 4, ... names of `ranking` in float until
    `reference - accuracy <= budget_points / 100` or `max_layers` are float.

    `build(excluded)` writes the INT8 file and returns it; `evaluate` scores it.
    When the budget is met, that file is kept. Otherwise the most accurate try
    is rebuilt and kept (the fewest float layers on a tie; none at all when no
    try beats `baseline`, the accuracy with every layer quantized).
    """
    tries: list[dict[str, Any]] = []
    count, accuracy, kept = 1, float("nan"), []
    limit = min(max_layers, len(ranking))
    while count <= limit:
        kept = ranking[:count]
        accuracy = evaluate(build(kept))
        drop = 100 * (reference - accuracy)
        tries.append({"float_layers": count, "accuracy": accuracy, "drop_points": drop})
        log(f"{count} layer(s) in float: accuracy {accuracy:.4f} (drop {drop:.2f} points)")
        if drop <= budget_points:
            return Fallback(kept, accuracy, True, tries)
        if count == limit:
            break
        count = min(2 * count, limit)
    if not tries:
        return Fallback(kept, accuracy, False, tries)
    best = max(tries, key=lambda t: (t["accuracy"], -t["float_layers"]))
    keep = best["float_layers"]
    if baseline is not None and baseline >= best["accuracy"]:
        keep, accuracy = 0, baseline
    else:
        accuracy = best["accuracy"]
    if keep != tries[-1]["float_layers"]:
        build(ranking[:keep])
    log(
        f"budget not met; keeping the best try: {keep} layer(s) in float "
        f"(drop {100 * (reference - accuracy):.2f} points)"
    )
    return Fallback(ranking[:keep], accuracy, False, tries)
