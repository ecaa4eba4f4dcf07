"""Weight-only INT4 for TensorRT: blocked symmetric DequantizeLinear -> MatMul (opset 21).

The checks here are written from the ONNX spec (DequantizeLinear: y = x * scale, blocks of
`block_size` along `axis`), not from the project's own dequantize.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compress.llm.export import export_with_past
from compress.llm.int4 import quantize_weights
from compress.llm.int4_qdq import positive_scales, quantize_rtn, quantize_weights_qdq
from compress.llm.models import load_lm
from compress.llm.options import WeightOnlyConfig
from compress.llm.runtime import OrtLM
from compress.trt.weight_only import check_weight_only
from tests.qdq_reference import exact_session, run

SEQUENCES = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 12, 13, 14]]
BLOCK = 16
TENSORRT = WeightOnlyConfig(block_size=BLOCK, targets=["cpu", "tensorrt"])


@pytest.fixture(scope="module")
def exported(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = load_lm(str(tiny_llama))
    return export_with_past(model, tokenizer, tmp_path_factory.mktemp("export"), 18)


@pytest.fixture(scope="module")
def qdq_file(exported: Path) -> Path:
    target = exported.with_name("model_int4_qdq.onnx")
    quantize_weights_qdq(exported, target, TENSORRT, progress=False)
    return target


def _feeds(path: Path) -> list[dict[str, np.ndarray]]:
    from compress.llm.calibrated import calibration_feeds

    return calibration_feeds(onnx.load(str(path)), SEQUENCES)


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _spec_dequantize(model: onnx.ModelProto, node: onnx.NodeProto) -> np.ndarray:
    """DequantizeLinear by the ONNX spec: each value times the scale of its block (zero 0)."""
    arrays = {t.name: t for t in model.graph.initializer}
    values = numpy_helper.to_array(arrays[node.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(arrays[node.input[1]]).astype(np.float64)
    attrs = _attrs(node)
    axis, block = int(str(attrs.get("axis", 1))), int(str(attrs.get("block_size", 0)))
    if block:
        index = np.arange(values.shape[axis]) // block
        scale = np.take(scale, index, axis=axis)
    else:
        scale = np.expand_dims(scale, 1 - axis)
    return (values * scale).astype(np.float32)


def _weight_nodes(model: onnx.ModelProto) -> dict[str, tuple[onnx.NodeProto, onnx.NodeProto]]:
    """Each MatMul or Gather reading a DequantizeLinear output: name -> (DQ, consumer)."""
    made = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    found = {}
    for node in model.graph.node:
        for name in node.input:
            if name in made:
                found[node.name] = (made[name], node)
    return found


def test_every_weight_path_is_blocked_int4_dequantize_into_matmul(
    exported: Path, qdq_file: Path
) -> None:
    source = onnx.load(str(exported))
    model = onnx.load(str(qdq_file))
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import}["ai.onnx"] == 21
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)  # no contrib op
    assert not any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    constants = {t.name: t for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    source_consts = {t.name for t in source.graph.initializer}
    layer_matmuls = [
        n.name
        for n in source.graph.node
        if n.op_type == "MatMul" and n.input[1] in source_consts and not set(n.output) & outputs
    ]
    paths = _weight_nodes(model)
    kinds: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type == "MatMul":
            assert node.input[1] not in constants, f"{node.name} reads a float weight"
        if node.name not in paths:
            continue
        dq, _ = paths[node.name]
        attrs = _attrs(dq)
        values = constants[dq.input[0]]
        scale = numpy_helper.to_array(constants[dq.input[1]])
        assert (scale > 0).all(), dq.name
        assert len(dq.input) == 2 or not dq.input[2]  # zero point 0 (none stored)
        if node.op_type == "MatMul" and not set(node.output) & outputs:
            assert values.data_type == TensorProto.INT4
            assert attrs["block_size"] == BLOCK and attrs["axis"] == 0
            kinds["layer"] += 1
        elif node.op_type == "MatMul":  # the LM head: 8 bits, one scale per output column
            assert values.data_type == TensorProto.INT8 and "block_size" not in attrs
            assert attrs["axis"] == 1 and scale.shape == (values.dims[1],)
            kinds["head"] += 1
        else:  # the lookup (embedding: shared) at the head's 8 bits, one scale per token row
            assert node.op_type == "Gather" and values.data_type == TensorProto.INT8
            assert attrs["axis"] == 0 and scale.shape == (values.dims[0],)
            kinds["embedding"] += 1
    assert kinds == {"layer": len(layer_matmuls), "head": 1, "embedding": 1}
    report = check_weight_only(model)
    assert report.ok and report.int4_matmuls == len(layer_matmuls), report.problems


def test_it_computes_the_numpy_dequantize_then_matmul_reference(
    exported: Path, qdq_file: Path
) -> None:
    """The file run exactly equals the float graph whose weights are the spec's dequantized
    values (to float32 rounding: 2e-5 on logits of size ~1), and each INT4 weight is its
    FP32 weight to within half a step of its block (weights above 7.5 steps, clipped from
    +8 to 7: within one step)."""
    model = onnx.load(str(qdq_file))
    fp32 = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(exported)).graph.initializer}
    rebuilt = onnx.load(str(qdq_file))
    checked = 0
    for dq in [n for n in model.graph.node if n.op_type == "DequantizeLinear"]:
        weight = _spec_dequantize(model, dq)
        node = next(n for n in rebuilt.graph.node if n.name == dq.name)
        rebuilt.graph.node.remove(node)
        rebuilt.graph.initializer.append(numpy_helper.from_array(weight, dq.output[0]))
        base = dq.input[0].removesuffix("_int4")
        if base in fp32 and _attrs(dq).get("axis") == 0:
            original = fp32[base]
            step = np.repeat(
                numpy_helper.to_array(
                    next(t for t in model.graph.initializer if t.name == dq.input[1])
                ),
                BLOCK,
                axis=0,
            )
            error = np.abs(weight - original)
            # beyond half a step: only weights above 7.5 steps, clipped to 7 (8 does not fit)
            beyond = error > step / 2 * (1 + 1e-5) + 1e-7
            assert (original[beyond] >= 7.5 * step[beyond] * (1 - 1e-5)).all(), dq.name
            assert (error <= step * (1 + 1e-5) + 1e-7).all(), dq.name
            checked += 1
    assert checked >= 20
    want = exact_session(rebuilt, ["logits"])
    got = exact_session(model, ["logits"])
    for feed in _feeds(exported):
        expected, actual = run(want, feed)["logits"], run(got, feed)["logits"]
        assert np.abs(actual - expected).max() <= 2e-5 * max(1.0, np.abs(expected).max())


def test_greedy_tokens_agree_with_the_cpu_int4_file(exported: Path, qdq_file: Path) -> None:
    cpu = exported.with_name("model_int4.onnx")
    quantize_weights(exported, cpu, WeightOnlyConfig(block_size=BLOCK), progress=False)
    prompts = [[1, 5, 6, 7], [1, 12, 13, 14, 15, 16], [1, 20, 21]]
    cpu_lm, trt_lm = OrtLM(cpu), OrtLM(qdq_file, exact=True)
    same = total = 0
    for prompt in prompts:
        a, b = cpu_lm.generate(prompt, 8).tokens, trt_lm.generate(prompt, 8).tokens
        same += sum(x == y for x, y in zip(a, b, strict=True))
        total += len(a)
    assert same >= 0.75 * total, f"{same}/{total}"


def test_scale_estimation_and_awq_write_the_same_form(exported: Path, tmp_path: Path) -> None:
    pytest.importorskip("nncf")
    wo = WeightOnlyConfig(
        block_size=BLOCK,
        algorithm="scale_estimation",
        awq=True,
        targets=["tensorrt"],
        embedding="int4",
    )
    target = tmp_path / "model_int4_qdq.onnx"
    summary = quantize_weights_qdq(exported, target, wo, False, SEQUENCES * 4)
    assert summary["groups"]["layers"]["algorithm"] == "awq+scale_estimation"
    assert summary["nncf_scales_start_positive"] and summary["negative_scale_values_clipped"] == 0
    model = onnx.load(str(target))
    report = check_weight_only(model)
    assert report.ok and report.block_sizes == {BLOCK}, report.problems
    assert (report.int4_gathers, report.int8_gathers) == (1, 0)  # embedding: int4
    rtn = tmp_path / "rtn.onnx"
    quantize_weights_qdq(exported, rtn, wo.model_copy(update={"algorithm": "rtn", "awq": False}))
    feed = _feeds(exported)[0]
    a = run(exact_session(target, ["logits"]), feed)["logits"]
    b = run(exact_session(rtn, ["logits"]), feed)["logits"]
    assert np.abs(a - b).max() > 1e-4  # the data-aware scales differ from rounding's


def test_quantize_rtn_rounds_each_block_to_its_scale() -> None:
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 8)).astype(np.float32)
    values, scale = quantize_rtn(weight, 16, 0)
    assert values.min() >= -8 and values.max() <= 7 and scale.shape == (4, 8)
    blocks = np.abs(weight).reshape(4, 16, 8).max(axis=1)
    assert np.allclose(scale, blocks / 8)
    rebuilt = values * np.repeat(scale, 16, axis=0)
    assert (np.abs(rebuilt - weight) <= np.repeat(scale, 16, axis=0) + 1e-6).all()


def test_positive_scales_flips_negative_blocks_and_counts_the_clipped() -> None:
    values = np.array([[-8, 3], [2, -1]], np.int8)  # blocks of 2 along axis 0
    scale = np.array([[-0.5, 0.25]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0, block_size=2)],
        "g",
        [],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])],
        [
            helper.make_tensor("q", TensorProto.INT4, [2, 2], values.ravel()),
            numpy_helper.from_array(scale, "s"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert positive_scales(model) == 1  # the -8 under a negative scale: +8 does not fit
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert (arrays["s"] > 0).all()
    assert arrays["q"].tolist() == [[7, 3], [-2, -1]]


def test_the_form_check_catches_contrib_ops_zero_points_and_negative_scales(
    exported: Path, qdq_file: Path
) -> None:
    cpu = exported.with_name("model_int4.onnx")
    if not cpu.is_file():
        quantize_weights(exported, cpu, WeightOnlyConfig(block_size=BLOCK), progress=False)
    report = check_weight_only(onnx.load(str(cpu)))
    assert not report.ok and any("MatMulNBits" in p for p in report.problems)
    assert any("opset 18" in p for p in report.problems)
    for how, expected in (("zero point", "asymmetric"), ("scale", "positive")):
        model = onnx.load(str(qdq_file))
        dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
        scale = next(t for t in model.graph.initializer if t.name == dq.input[1])
        if how == "zero point":
            zero = np.ones(tuple(scale.dims), np.int8)
            model.graph.initializer.append(
                helper.make_tensor("zp", TensorProto.INT4, list(scale.dims), zero.ravel())
            )
            dq.input.append("zp")
        else:
            scale.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(scale), scale.name))
        problems = check_weight_only(model).problems
        assert len(problems) == 1 and expected in problems[0], (how, problems)
