"""Independent checks of quantized ONNX files, written from the ONNX specs, not the project.

Every check returns a list of problems (empty: the file passed), so a test can assert that a
produced file passes *and* that a corrupted copy of it (`mutate_*`) does not: the second proves
the check can catch the bug it is there for.

- `int8_weight_problems`: every INT8/UINT8 weight initializer (Q/DQ or ONNX Runtime dynamic
  INT8, `<w>_quantized` with `<w>_scale` / `<w>_zero_point`) is rebuilt as s * (q - z) and
  compared with its FP32 source weight element by element: round to nearest puts every
  element within s/2 of it, and min-max scales put some element of each channel at the end
  of the integer range (a scale too large by any factor leaves that end unused).
- `qdq_layer_problems`: every quantized MatMul/Gemm of a Q/DQ file, run exactly (no graph
  optimizations), computes what NumPy computes from its float input with the file's scales
  (QuantizeLinear: round half to even, saturate), within float rounding; and stays within the
  scale-derived bound sum_k |x_k| s_w/2 + |w_k| s_x/2 + s_x s_w/4 of the float layer.
- `mutate`: a copy of a Q/DQ file with one bug (block-quantized files:
  `tests.nbits_reference`).
- `split_accuracy`: the accuracy of an ONNX classifier on a split, by argmax against labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

FLOAT = onnx.TensorProto.FLOAT
# |float32 rounding| slack: relative to the size of what is compared
REL = 1e-5


def _arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _along(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-channel vector shaped to broadcast along `axis` of an `ndim` array."""
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def _fp32_source(fp32: dict[str, np.ndarray], base: str) -> np.ndarray | None:
    """The FP32 weight `<base>` (ONNX Runtime's `<w>_Transposed`: the transpose of `<w>`)."""
    if base in fp32:
        return fp32[base]
    if base.endswith("_Transposed") and base[: -len("_Transposed")] in fp32:
        return fp32[base[: -len("_Transposed")]].T
    return None


def weight_base(name: str) -> str:
    """The FP32 weight an int8 initializer was made from: `<w>_quantized` (ONNX Runtime) or
    `q_output_<w>_<k>` (NNCF)."""
    if name.endswith("_quantized"):
        return name[: -len("_quantized")]
    match = re.fullmatch(r"q_output_(.+)_\d+", name)
    return match.group(1) if match else name


def int8_weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """FP32 weight name -> (q, scale, zero point, axis) of every INT8 weight of the file: the
    constant inputs of its DequantizeLinear nodes, and dynamic INT8's `<w>_quantized` with
    `<w>_scale` and `<w>_zero_point` (its integer MatMuls take per-column scales: the last
    axis)."""
    model = onnx.load(str(path))
    arrays = _arrays(model)
    out = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in arrays:
            q, scale, zero = (arrays[i] for i in node.input[:3])
            axis = int(_attrs(node).get("axis", 1)) % max(q.ndim, 1)
            out[weight_base(node.input[0])] = (q, scale, zero, axis)
    for name, q in arrays.items():
        base = weight_base(name)
        if base in out or not name.endswith("_quantized") or q.dtype not in (np.int8, np.uint8):
            continue
        scale, zero = arrays[base + "_scale"], arrays[base + "_zero_point"]
        out[base] = (q, scale, zero, q.ndim - 1)
    return out


def int8_weight_problems(fp32_path: Path, int8_path: Path) -> list[str]:
    """What is wrong with the INT8 weights of `int8_path` against the FP32 file's (see top)."""
    fp32 = _arrays(onnx.load(str(fp32_path)))
    weights = int8_weights(int8_path)
    problems = [] if weights else [f"{int8_path.name}: no quantized weight"]
    for base, (q, scale, zero, axis) in weights.items():
        source = _fp32_source(fp32, base)
        if source is None:
            problems.append(f"{base}: no FP32 source weight")
            continue
        if source.shape != q.shape:
            problems.append(f"{base}: shape {q.shape}, FP32 {source.shape}")
            continue
        s = _along(scale.astype(np.float64), q.ndim, axis)
        z = _along(zero.astype(np.int64), q.ndim, axis)
        steps = q.astype(np.int64) - z
        error = np.abs(steps * s - source.astype(np.float64))
        bound = s / 2 * (1 + REL) + REL * np.abs(source)
        if np.any(error > bound):
            worst = float(np.max(error / np.broadcast_to(s, error.shape)))
            problems.append(f"{base}: an element is {worst:.2f} steps from its FP32 value")
        info = np.iinfo(q.dtype)
        if q.dtype == np.int32:  # a bias: its scale is its input's times its weight's
            continue
        if zero.dtype == np.int8 and np.all(zero == 0):  # symmetric: |q| reaches its range
            others = tuple(a for a in range(q.ndim) if a != axis or scale.size == 1)
            reach = np.abs(q.astype(np.int64))
            top, used = reach.max(axis=others), np.abs(source).max(axis=others) > 0
            if np.any(top[used] < reach.max()) or reach.max() not in (63, 64, 127):
                problems.append(f"{base}: a channel's scale leaves its int8 range unused")
        elif np.ptp(source) > 0 and q.min() != info.min and q.max() != info.max:  # asymmetric
            problems.append(f"{base}: the scale leaves both ends of the range unused")
    return problems


# -- Q/DQ files, executed exactly ----------------------------------------------------------


def exact_session(model: onnx.ModelProto | Path, outputs: Sequence[str] = ()) -> Any:
    """ONNX Runtime on the CPU without graph optimizations (Q/DQ run as float arithmetic),
    returning the graph outputs and then `outputs`."""
    import onnxruntime as ort

    proto = onnx.load(str(model)) if isinstance(model, Path) else onnx.ModelProto()
    if not isinstance(model, Path):
        proto.CopyFrom(model)
    declared = {o.name for o in proto.graph.output}
    for name in outputs:
        if name not in declared:
            proto.graph.output.append(
                helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def run(sess: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All outputs of `sess` on the inputs it declares, by name."""
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    values = sess.run(None, {k: v for k, v in feed.items() if k in wanted})
    return dict(zip(names, values, strict=True))


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """ONNX QuantizeLinear (per tensor): round half to even, saturate to the zero point's type."""
    info = np.iinfo(zero.dtype)
    q = np.rint(x.astype(np.float32) / np.float32(scale)) + int(zero)
    return np.clip(q, info.min, info.max).astype(np.int64)


def qdq_layer_problems(
    fp32_path: Path, int8_path: Path, feeds: Sequence[dict[str, np.ndarray]]
) -> list[str]:
    """Every MatMul/Gemm of the Q/DQ file that reads one quantized activation and one
    quantized constant weight, checked on `feeds` (see top)."""
    model = onnx.load(str(int8_path))
    arrays = _arrays(model)
    fp32 = _arrays(onnx.load(str(fp32_path)))
    made_by = {o: n for n in model.graph.node for o in n.output}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        dq = [made_by.get(i) for i in node.input[:2]]
        if any(d is None or d.op_type != "DequantizeLinear" for d in dq):
            continue
        act, weight = (0, 1) if dq[1].input[0] in arrays else (1, 0)
        if dq[weight].input[0] not in arrays or dq[act].input[0] in arrays:
            continue
        quant = made_by.get(dq[act].input[0])
        if quant is None or quant.op_type != "QuantizeLinear":
            continue
        layers.append((node, quant, dq[weight], act))
    if not layers:
        return [f"{int8_path.name}: no quantized MatMul/Gemm"]
    names = sorted(
        {
            t
            for node, quant, _, _ in layers
            for t in (quant.input[0], *node.input[2:], node.output[0])
        }
        - set(arrays)
    )
    sess = exact_session(model, names)
    problems: list[str] = []
    for feed in feeds:
        values = run(sess, feed)
        for node, quant, wdq, act in layers:
            x = values[quant.input[0]].astype(np.float64)
            s_x, z_x = arrays[quant.input[1]], arrays[quant.input[2]]
            x_hat = (quantize_linear(x, s_x, z_x) - int(z_x)) * float(s_x)
            base = weight_base(wdq.input[0])
            q, scale, zero = (arrays[i] for i in wdq.input[:3])
            axis = int(_attrs(wdq).get("axis", 1)) % q.ndim
            s_w = _along(scale.astype(np.float64), q.ndim, axis)
            w_hat = (q.astype(np.int64) - _along(zero.astype(np.int64), q.ndim, axis)) * s_w
            w = _fp32_source(fp32, base)
            attrs = _attrs(node)
            if w is None or w.shape != q.shape or act != 0:
                problems.append(f"{node.name}: weight {base} does not match the FP32 file")
                continue
            w = w.astype(np.float64)
            if node.op_type == "Gemm" and attrs.get("transB", 0):
                w_hat, w, s_w = w_hat.T, w.T, np.broadcast_to(s_w, q.shape).T
            s_w = np.broadcast_to(s_w, w.shape)
            bias = np.float64(0.0)
            if len(node.input) > 2:  # a Gemm's float bias (a constant, or from a node)
                bias = arrays.get(node.input[2], values.get(node.input[2]))
                bias = np.asarray(bias, np.float64)
            got = values[node.output[0]].astype(np.float64)
            want = x_hat @ w_hat + bias
            rounding = REL * (np.abs(x_hat) @ np.abs(w_hat) + np.abs(bias)) + 1e-6
            if np.any(np.abs(got - want) > rounding):
                problems.append(f"{node.name}: not x_hat @ w_hat with the file's scales")
            # |x_hat - x| is at most s_x/2, or more where x lies past the calibrated range
            dx = np.maximum(float(s_x) / 2, np.abs(x) - 127 * float(s_x))
            bound = np.abs(x) @ s_w / 2 + dx @ np.abs(w_hat) + float(s_x) * s_w.sum(0) / 4
            error = np.abs(got - (x @ w + bias))
            if np.any(error > bound * (1 + REL) + rounding):
                problems.append(f"{node.name}: off the float layer by more than its scales allow")
    return sorted(set(problems))


def activation_scale_problems(
    fp32_path: Path, int8_path: Path, feeds: Sequence[dict[str, np.ndarray]]
) -> list[str]:
    """Symmetric min-max calibration: every QuantizeLinear of a float tensor of the FP32
    graph has the scale max|x| / 127 over `feeds` run through the FP32 file."""
    model = onnx.load(str(int8_path))
    arrays = _arrays(model)
    made = {o for n in onnx.load(str(fp32_path)).graph.node for o in n.output}
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in made]
    if not quants:
        return [f"{int8_path.name}: no QuantizeLinear of an FP32 tensor"]
    names = sorted({n.input[0] for n in quants})
    sess = exact_session(fp32_path, names)
    peak = dict.fromkeys(names, 0.0)
    for feed in feeds:
        values = run(sess, feed)
        for name in names:
            peak[name] = max(peak[name], float(np.abs(values[name]).max()))
    problems = []
    for node in quants:
        scale = float(arrays[node.input[1]])
        if abs(scale * 127 - peak[node.input[0]]) > REL * peak[node.input[0]] + 1e-12:
            problems.append(
                f"{node.name}: scale {scale:.4g}, max|x| / 127 is {peak[node.input[0]] / 127:.4g}"
            )
    return problems


# -- mutations: the bugs the checks are there to catch -------------------------------------


def _replace(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(value, name))


def mutate(path: Path, out: Path, how: str) -> Path:
    """A copy of the Q/DQ file `path` with one bug in its first INT8 weight, saved to `out`.

    `how`: "scale x2" (a scale doubled), "transpose" (a square quantized weight transposed),
    "activation scale x2" (the scale of the first QuantizeLinear doubled)."""
    model = onnx.load(str(path))
    arrays = _arrays(model)
    names = {t.name for t in model.graph.initializer}
    node = next(
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in names
        and arrays[n.input[0]].dtype == np.int8
        and (how != "transpose" or len(set(arrays[n.input[0]].shape)) == 1)
    )
    weight, scale = node.input[0], node.input[1]
    if how == "activation scale x2":
        quant = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
        _replace(model, quant.input[1], arrays[quant.input[1]] * np.float32(2))
    elif how == "scale x2":
        _replace(model, scale, arrays[scale] * np.float32(2))
    elif how == "transpose":
        _replace(model, weight, np.ascontiguousarray(arrays[weight].T))
    else:
        raise ValueError(how)
    onnx.save(model, str(out))
    return out


# -- accuracy, computed here ---------------------------------------------------------------


def split_accuracy(
    path: Path,
    tokenizer: Any,
    texts: Sequence[str],
    labels: np.ndarray,
    max_length: int,
    exact: bool,
    one_by_one: bool = False,
) -> float:
    """Share of `texts` whose argmax logit (ONNX Runtime on the CPU) is their label.

    `exact`: no graph optimizations (Q/DQ files: their graph's arithmetic); `one_by_one`:
    one text a batch (dynamic INT8 quantizes each batch's activations with its own range)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    declared = {i.name for i in sess.get_inputs()}
    size = 1 if one_by_one else len(texts)
    predictions = []
    for start in range(0, len(texts), size):
        enc = tokenizer(
            list(texts[start : start + size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        feed = {k: np.asarray(v, np.int64) for k, v in enc.items() if k in declared}
        predictions.append(sess.run(None, feed)[0].argmax(-1))
    return float(np.mean(np.concatenate(predictions) == np.asarray(labels)))
