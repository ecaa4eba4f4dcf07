"""Data-aware weight-only INT4 through NNCF (scale estimation, AWQ) on ONNX graphs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from compress.errors import PassFailed
from compress.llm.calibrated import calibration_feeds, compress_with_nncf
from compress.llm.export import export_with_past, fuse_decoder
from compress.llm.int4 import quantize_weights
from compress.llm.models import load_lm
from compress.llm.options import WeightOnlyConfig
from compress.llm.runtime import OrtLM
from tests.nbits_reference import nbits_layer_problems, nbits_weight_problems

K, N = 128, 96


def _session(model: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _one_matmul(weight: np.ndarray) -> Any:
    """y = x @ W, the float model NNCF is given."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj/MatMul")],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", N])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _activations(rng: np.random.Generator, rows: int) -> np.ndarray:
    x = rng.normal(size=(1, rows, K)).astype(np.float32)
    x[..., :4] *= 30  # a few outlier channels, as LLM activations have
    return x


@pytest.mark.parametrize("method", ["rtn", "scale_estimation"])
def test_nncf_blocks_load_in_onnx_runtime_and_match_the_float_layer(
    method: str, tmp_path: Path
) -> None:
    """NNCF's blocks, packed for MatMulNBits, rebuild the float weight within s/2 (inside the
    integer range) and ONNX Runtime computes x @ those rebuilt weights."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(K, N)).astype(np.float32)
    feeds = [{"x": _activations(rng, 16)} for _ in range(8)]
    wo = WeightOnlyConfig(algorithm=method, block_size=32)
    compressed = compress_with_nncf(_one_matmul(weight), ["proj/MatMul"], wo, feeds)
    node = next(n for n in compressed.graph.node if n.op_type == "MatMulNBits")
    zero = next(t for t in compressed.graph.initializer if t.name == node.input[3])
    # two 4-bit zero points a byte, as MatMulNBits takes them (ONNX Runtime refuses others)
    assert zero.data_type == TensorProto.UINT8 and list(zero.dims) == [N, K // 32 // 2]
    assert not compressed.graph.value_info  # the shape inference NNCF needed is not kept
    x = _activations(rng, 32)
    got = _session(compressed).run(None, {"x": x})[0]
    reference = x @ weight
    # 4-bit blocks: a few percent off; a mis-packed zero point would be off by whole steps
    assert np.abs(got - reference).mean() / np.abs(reference).mean() < 0.1
    onnx.save(_one_matmul(weight), str(tmp_path / "float.onnx"))
    onnx.save(compressed, str(tmp_path / "int4.onnx"))
    assert nbits_weight_problems(tmp_path / "float.onnx", tmp_path / "int4.onnx", True) == []
    layers = nbits_layer_problems(tmp_path / "float.onnx", tmp_path / "int4.onnx", [{"x": x}])
    assert layers == [] if method == "rtn" else all("s/2" in p for p in layers)


def test_scale_estimation_fits_the_outputs_better_than_rounding_to_nearest() -> None:
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(K, N)).astype(np.float32)
    feeds = [{"x": _activations(rng, 16)} for _ in range(16)]
    errors = {}
    for method in ("rtn", "scale_estimation"):
        wo = WeightOnlyConfig(algorithm=method, block_size=32)
        compressed = compress_with_nncf(_one_matmul(weight), ["proj/MatMul"], wo, feeds)
        session = _session(compressed)
        errors[method] = sum(
            float(np.square(session.run(None, f)[0] - f["x"] @ weight).mean()) for f in feeds
        )
    assert errors["scale_estimation"] < errors["rtn"]


@pytest.fixture(scope="module")
def fused(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    model, tokenizer = load_lm(str(tiny_llama))
    out = tmp_path_factory.mktemp("fused")
    portable = export_with_past(model, tokenizer, out, 17)
    _, skipped = fuse_decoder(portable, out / "model_ort.onnx", model.config)
    assert skipped is None
    return out / "model_ort.onnx", tokenizer


def test_awq_and_scale_estimation_on_the_fused_decoder(
    fused: tuple[Path, Any], tmp_path: Path
) -> None:
    """AWQ + scale estimation add no node; the weights AWQ does not rescale are their FP32
    ones within s/2, and every layer computes x @ its rebuilt weights."""
    source, tokenizer = fused
    texts = ["the movie was good and fun", "a boring film", "not great but fine", "loved it"]
    calibration = tokenizer(texts)["input_ids"]
    wo = WeightOnlyConfig(
        algorithm="scale_estimation", awq=True, block_size=16, int8_layers=[r".*/layers\.0/.*"]
    )
    target = tmp_path / "model_int4.onnx"
    summary = quantize_weights(source, target, wo, False, calibration)
    assert summary["calibration_sequences"] == 4
    assert summary["groups"]["layers"]["algorithm"] == "awq+scale_estimation"
    assert summary["groups"]["layers"]["nodes"] == 3 * 5  # layers 1-3, the rest stay 8-bit
    assert summary["embedding_shares_lm_head"] is True
    model = onnx.load(str(target))
    ops = Counter(n.op_type for n in model.graph.node)
    # no node added: AWQ's scales are folded into the up projections
    assert (
        ops["MatMulNBits"] == 4 * 5 + 1 and ops["MatMul"] == 0 and ops["GroupQueryAttention"] == 4
    )
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["accuracy_level"] == 4
    # AWQ rescales the up/down projections' channels; every other weight (scale estimation,
    # the 8-bit layer 0, the head) is its FP32 weight within s/2 inside the integer range,
    # and every MatMulNBits computes x @ its rebuilt weights (the scales' bound where it can)
    unscaled = ("qkv_proj", "o_proj", "gate_proj", "layers.0/", "lm_head")
    assert nbits_weight_problems(source, target, clipped=True, only=unscaled) == []
    feeds = calibration_feeds(onnx.load(str(source)), calibration)
    assert nbits_layer_problems(source, target, feeds, only=unscaled) == []
    # decoding with the cache in place picks what the whole sequence's logits pick
    prompt = calibration[0]
    tokens = OrtLM(target).generate(prompt, 5).tokens
    full = np.array([prompt + tokens[:-1]])
    picked = OrtLM(target).logits(full, np.ones_like(full))[0, len(prompt) - 1 :].argmax(-1)
    assert list(picked) == tokens


def test_nncf_sees_the_tied_head_still_tied(
    fused: tuple[Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The untied head's own copy of the embedding would count against NNCF's 2 GB."""
    import compress.llm.calibrated as calibrated

    source = fused[0]
    seen: list[set[str]] = []
    real = calibrated.compress_with_nncf

    def spy(model: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append({t.name for t in model.graph.initializer})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(calibrated, "compress_with_nncf", spy)
    wo = WeightOnlyConfig(algorithm="scale_estimation", block_size=16)
    summary = quantize_weights(source, tmp_path / "m.onnx", wo, False, [[1, 5, 6, 7, 8]])
    assert len(seen) == 1 and "lm_head.weight_transposed" not in seen[0]
    assert "model.embed_tokens.weight" in seen[0]
    assert summary["embedding_shares_lm_head"] is True  # untied after, then shared


def test_the_data_aware_methods_need_calibration_text(
    fused: tuple[Path, Any], tmp_path: Path
) -> None:
    with pytest.raises(PassFailed, match="needs calibration text"):
        quantize_weights(fused[0], tmp_path / "x.onnx", WeightOnlyConfig(awq=True), False)


def test_a_graph_over_protobufs_limit_is_refused_with_what_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import compress.llm.calibrated as calibrated

    model = _one_matmul(np.ones((K, N), np.float32))
    monkeypatch.setattr(calibrated, "PROTOBUF_LIMIT", model.ByteSize() - 1)
    with pytest.raises(PassFailed, match=r"protobuf's 2 GB.*use algorithm rtn or hqq"):
        compress_with_nncf(model, ["proj/MatMul"], WeightOnlyConfig(awq=True), [])


def test_data_aware_options_are_checked_in_the_recipe() -> None:
    with pytest.raises(ValueError, match="not hqq"):
        WeightOnlyConfig(algorithm="hqq", awq=True)
    with pytest.raises(ValueError, match="set bits: 4"):
        WeightOnlyConfig(algorithm="scale_estimation", bits=8)
