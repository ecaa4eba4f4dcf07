"""Weight-only INT4 of an exported LM (ONNX Runtime's MatMulNBits quantizer)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from compress.llm.export import export_with_past
from compress.llm.int4 import node_groups, quantize_weights
from compress.llm.models import load_lm
from compress.llm.options import WeightOnlyConfig
from compress.llm.runtime import OrtLM
from tests.nbits_reference import (
    float_rebuild,
    mutate,
    nbits_layer_problems,
    nbits_weight_problems,
)
from tests.qdq_reference import exact_session, run

SEQUENCES = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 12, 13, 14]]


@pytest.fixture(scope="module")
def exported(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = load_lm(str(tiny_llama))
    return export_with_past(model, tokenizer, tmp_path_factory.mktemp("export"), 18)


@pytest.fixture(scope="module")
def rtn_file(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default weight-only file: RTN 4-bit layers, an 8-bit head shared with the embedding."""
    target = tmp_path_factory.mktemp("rtn") / "model_int4.onnx"
    quantize_weights(exported, target, WeightOnlyConfig(block_size=16), progress=False)
    return target


def _feeds(path: Path) -> list[dict[str, np.ndarray]]:
    from compress.llm.calibrated import calibration_feeds

    return calibration_feeds(onnx.load(str(path)), SEQUENCES)


def _fp32_compute(path: Path) -> onnx.ModelProto:
    """The file with every MatMulNBits at accuracy_level 0 (no activation is quantized)."""
    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*kept, onnx.helper.make_attribute("accuracy_level", 0)])
    return model


def assert_computes_its_rebuilt_weights(exported: Path, target: Path, clipped: bool) -> None:
    """Each block-quantized weight is its FP32 weight within s/2 (HQQ: inside the integer
    range); each MatMulNBits computes x @ its rebuilt weights, within |x| @ (s/2) of the FP32
    layer; and the whole file computes what its graph with the rebuilt float weights does."""
    assert nbits_weight_problems(exported, target, clipped) == []
    feeds = _feeds(exported)
    assert nbits_layer_problems(exported, target, feeds) == []
    rebuilt, quantized = exact_session(float_rebuild(target)), exact_session(_fp32_compute(target))
    for feed in feeds:
        want, got = run(rebuilt, feed)["logits"], run(quantized, feed)["logits"]
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def _ops(path: Path) -> Counter[str]:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _float_bytes(path: Path) -> int:
    model = onnx.load(str(path))
    return sum(
        t.ByteSize() for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
    )


@pytest.mark.parametrize("algorithm", ["rtn", "hqq"])
def test_every_matmul_becomes_int4_and_the_tied_embedding_is_one_copy(
    exported: Path, tmp_path: Path, algorithm: str
) -> None:
    """Every MatMul is MatMulNBits, the tied embedding one quantized copy, and the file
    computes its FP32 weights rounded (see `assert_computes_its_rebuilt_weights`)."""
    groups = node_groups(onnx.load(str(exported)))
    assert len(groups["layers"]) == 4 * 7 and len(groups["embedding"]) == 1
    target = tmp_path / "model_int4.onnx"
    wo = WeightOnlyConfig(algorithm=algorithm, block_size=16)
    summary = quantize_weights(exported, target, wo, progress=False)
    assert summary["embedding_shares_lm_head"] is True
    ops = _ops(target)
    assert ops["MatMulNBits"] == 4 * 7 + 1  # every layer's projections and the LM head
    assert ops["GatherBlockQuantized"] == 1 and ops["Transpose"] < _ops(exported)["Transpose"]
    names = {t.name for t in onnx.load(str(target)).graph.initializer}
    assert "model.embed_tokens.weight" not in names  # no float copy of the tied matrix left
    assert _float_bytes(target) < _float_bytes(exported) / 4
    assert_computes_its_rebuilt_weights(exported, target, clipped=algorithm == "hqq")


@pytest.mark.parametrize("bug", ["swap nibbles", "scale x2", "transpose"])
def test_the_int4_checks_reject_a_corrupted_file(
    exported: Path, rtn_file: Path, tmp_path: Path, bug: str
) -> None:
    """Mutation check: the weight and layer checks above reject the file with one
    MatMulNBits' nibbles swapped, its scales doubled, or its (square) weight transposed."""
    assert nbits_weight_problems(exported, rtn_file) == []
    bad = mutate(rtn_file, tmp_path / "bad.onnx", bug)
    assert nbits_weight_problems(exported, bad)
    assert nbits_layer_problems(exported, bad, _feeds(exported))


def test_float_embedding_and_head_stay_float(exported: Path, tmp_path: Path) -> None:
    target = tmp_path / "model_int4.onnx"
    wo = WeightOnlyConfig(algorithm="rtn", block_size=16, lm_head_bits=None, embedding="float")
    summary = quantize_weights(exported, target, wo, progress=False)
    assert set(summary["groups"]) == {"layers"}
    ops = _ops(target)
    assert ops["MatMulNBits"] == 4 * 7 and ops["GatherBlockQuantized"] == 0


def test_matmuls_can_be_kept_float(exported: Path, tmp_path: Path) -> None:
    target = tmp_path / "model_int4.onnx"
    wo = WeightOnlyConfig(block_size=16, keep_float=[r".*layers\.0/.*"])
    summary = quantize_weights(exported, target, wo, progress=False)
    assert len(summary["kept_float"]) == 7
    assert _ops(target)["MatMulNBits"] == 3 * 7 + 1


def test_named_matmuls_are_rounded_to_nearest_beside_hqq(exported: Path, tmp_path: Path) -> None:
    """The named layers are RTN (within s/2 of FP32, no HQQ correction), the rest HQQ."""
    target = tmp_path / "model_int4.onnx"
    wo = WeightOnlyConfig(
        algorithm="hqq", block_size=16, rtn_layers=[r".*/mlp/down_proj/.*"], lm_head_bits=8
    )
    summary = quantize_weights(exported, target, wo, progress=False)
    # rounded to nearest: every element of the RTN layers and the head within s/2 of FP32
    assert nbits_weight_problems(exported, target, only=("down_proj", "lm_head", "Gather")) == []
    assert summary["groups"]["layers (rtn)"]["nodes"] == 4
    assert summary["groups"]["layers"]["algorithm"] == "hqq"
    assert summary["groups"]["lm_head"]["bits"] == 8 and summary["embedding_shares_lm_head"]
    model = onnx.load(str(target))
    types = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMulNBits" and "/layers." in node.name:
            assert types[node.input[3]] == onnx.TensorProto.UINT8, node.name
            # HQQ's float zero points were rounded: its nodes carry a correction, RTN's not
            corrected = node.output[0].endswith("/integer")
            assert corrected is ("down_proj" not in node.name), node.name


def test_a_block_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        WeightOnlyConfig(block_size=48)


def test_every_matmulnbits_runs_the_fast_kernels_and_8_bit_layers_stay_8_bit(
    exported: Path, tmp_path: Path
) -> None:
    """accuracy_level 4 everywhere; layer 0 and the head 8-bit, each weight within s/2."""
    target = tmp_path / "model_int4.onnx"
    wo = WeightOnlyConfig(algorithm="rtn", block_size=16, int8_layers=[r".*/layers\.0/.*"])
    summary = quantize_weights(exported, target, wo, progress=False)
    assert summary["groups"]["layers (8-bit)"] == {
        "nodes": 7, "bits": 8, "block_size": 16, "symmetric": False, "algorithm": "rtn",
        "seconds": summary["groups"]["layers (8-bit)"]["seconds"],
    }  # fmt: skip
    for node in onnx.load(str(target)).graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["accuracy_level"] == 4
            eight = "/layers.0/" in node.name or "lm_head" in node.name  # the head: 8 by default
            assert attrs["bits"] == (8 if eight else 4), node.name
    assert nbits_weight_problems(exported, target) == []  # 8-bit bytes and 4-bit nibbles alike


def _matmul_nbits_inits(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    return {
        name: onnx.numpy_helper.to_array(inits[name])
        for node in model.graph.node
        if node.op_type == "MatMulNBits"
        for name in node.input[1:4]
        if name in inits
    }


def test_hqq_float_zero_points_become_integer_ones_with_the_same_outputs(
    exported: Path, tmp_path: Path
) -> None:
    options = {"algorithm": "hqq", "block_size": 16, "accuracy_level": 0}  # FP32 compute
    floating, integer = tmp_path / "float.onnx", tmp_path / "integer.onnx"
    quantize_weights(exported, floating, WeightOnlyConfig(**options, integer_zero_points=False))
    summary = quantize_weights(exported, integer, WeightOnlyConfig(**options), progress=False)
    assert summary["integer_zero_points"] == 4 * 7  # every HQQ layer; the RTN head had none
    before, after = _matmul_nbits_inits(floating), _matmul_nbits_inits(integer)
    zero_points = [n for n in after if "zero_points" in n]
    assert zero_points and all(after[n].dtype == np.uint8 for n in zero_points)
    assert any(v.dtype == np.float32 for n, v in before.items() if "zero_points" in n)
    for name in (n for n in before if n.endswith(("_Q4", "_scales"))):
        np.testing.assert_array_equal(after[name], before[name])  # HQQ's own weights and scales
    ids = np.array([[1, 5, 6, 7, 8, 9, 10, 11], [1, 12, 13, 14, 0, 0, 0, 0]])
    mask = (ids > 0).astype(np.int64)
    want = OrtLM(floating).logits(ids, mask)
    got = OrtLM(integer).logits(ids, mask)
    assert np.abs(got - want).max() < 1e-3 * max(1.0, float(np.abs(want).max()))
    prompt = [1, 5, 6, 7]
    assert OrtLM(integer).generate(prompt, 6).tokens == OrtLM(floating).generate(prompt, 6).tokens


def test_a_head_block_that_does_not_divide_the_hidden_size_cannot_be_shared(
    exported: Path, tmp_path: Path
) -> None:
    from compress.errors import PassFailed

    wo = WeightOnlyConfig(block_size=16, lm_head_bits=8, lm_head_block_size=128)  # hidden 64
    with pytest.raises(PassFailed, match="lm_head_block_size that divides the hidden size"):
        quantize_weights(exported, tmp_path / "model_int4.onnx", wo, progress=False)
