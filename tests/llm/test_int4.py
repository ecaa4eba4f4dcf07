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


@pytest.fixture(scope="module")
def exported(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = load_lm(str(tiny_llama))
    return export_with_past(model, tokenizer, tmp_path_factory.mktemp("export"), 18)


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
    ids = np.array([[1, 5, 6, 7, 8, 9, 10, 11]])
    mask = np.ones_like(ids)
    reference = OrtLM(exported).logits(ids, mask)
    quantized = OrtLM(target).logits(ids, mask)
    # 4-bit weights move the logits, but not by their own size
    assert 0 < np.abs(quantized - reference).max() < 0.5 * np.abs(reference).max()


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
    target = tmp_path / "model_int4.onnx"
    wo = WeightOnlyConfig(
        algorithm="hqq", block_size=16, rtn_layers=[r".*/mlp/down_proj/.*"], lm_head_bits=8
    )
    summary = quantize_weights(exported, target, wo, progress=False)
    assert summary["groups"]["layers (rtn)"]["nodes"] == 4
    assert summary["groups"]["layers"]["algorithm"] == "hqq"
    assert summary["groups"]["lm_head"]["bits"] == 8 and summary["embedding_shares_lm_head"]
    model = onnx.load(str(target))
    types = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "MatMulNBits" and "/layers." in node.name:
            zero = types[node.input[3]]
            rtn = "down_proj" in node.name
            assert zero == (onnx.TensorProto.UINT8 if rtn else onnx.TensorProto.FLOAT), node.name


def test_a_block_size_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of 2"):
        WeightOnlyConfig(block_size=48)


def test_every_matmulnbits_runs_the_fast_kernels_and_8_bit_layers_stay_8_bit(
    exported: Path, tmp_path: Path
) -> None:
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
