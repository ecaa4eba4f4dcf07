"""The decoder's attention rewritten into GroupQueryAttention computes what PyTorch does."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
import pytest

from compress.llm.export import export_with_past, fuse_decoder, lm_parity
from compress.llm.genai import genai_available, write_genai_config
from compress.llm.int4 import quantize_weights
from compress.llm.models import load_lm
from compress.llm.options import WeightOnlyConfig
from compress.llm.runtime import OrtLM, TorchLM
from tests.llm_fixtures import build_tiny_llama

TEXTS = ["the movie was good and fun", "a boring film", "the plot is not really great but fine"]


def _fused(model_dir: Path, out: Path) -> tuple[object, object, Path, dict[str, int], str | None]:
    model, tokenizer = load_lm(str(model_dir))
    portable = export_with_past(model, tokenizer, out, 17)
    counts, skipped = fuse_decoder(portable, out / "model_ort.onnx", model.config)
    return model, tokenizer, out / "model_ort.onnx", counts, skipped


def test_every_layer_becomes_one_group_query_attention_with_parity(
    tiny_llama: Path, tmp_path: Path
) -> None:
    model, tokenizer, file, counts, skipped = _fused(tiny_llama, tmp_path / "onnx")
    assert skipped is None and counts["GroupQueryAttention"] == 4
    graph = onnx.load(str(file)).graph
    ops = Counter(n.op_type for n in graph.node)
    assert ops["GroupQueryAttention"] == 4 and ops["Softmax"] == 0 and ops["Expand"] == 0
    assert ops["MatMul"] == 4 * 5 + 1  # QKV packed, output, gate, up, down; and the head
    names = {n.name for n in graph.node}
    assert {f"/model/layers.{i}/self_attn/qkv_proj/MatMul" for i in range(4)} <= names
    inputs = [i.name for i in graph.input]
    assert "position_ids" not in inputs and "attention_mask" in inputs  # positions: the mask
    sequences = tokenizer(TEXTS)["input_ids"]  # right-padded batch, then token by token
    worst = lm_parity(model, file, sequences, 1e-4)
    assert max(worst.values()) < 1e-4
    prompt = tokenizer(TEXTS[2])["input_ids"]
    expected = TorchLM(model).generate(prompt, 8).tokens
    runtime = OrtLM(file)
    assert runtime.shares_cache  # one cache buffer, appended in place by the kernel
    assert runtime.generate(prompt, 8).tokens == expected
    runtime.shares_cache = False  # the same graph with the cache concatenated step by step
    assert runtime.generate(prompt, 8).tokens == expected


def test_the_int4_file_keeps_the_attention_and_its_cache_in_place(
    tiny_llama: Path, tmp_path: Path
) -> None:
    _, tokenizer, file, _, _ = _fused(tiny_llama, tmp_path / "onnx")
    target = tmp_path / "onnx" / "model_int4.onnx"
    quantize_weights(file, target, WeightOnlyConfig(algorithm="hqq", block_size=16), False)
    ops = Counter(n.op_type for n in onnx.load(str(target)).graph.node)
    assert ops["GroupQueryAttention"] == 4 and ops["MatMulNBits"] == 4 * 5 + 1
    prompt = tokenizer(TEXTS[1])["input_ids"]
    int4 = OrtLM(target)
    assert int4.shares_cache
    in_place = int4.generate(prompt, 6).tokens
    int4.shares_cache = False
    assert int4.generate(prompt, 6).tokens == in_place


def test_genai_config_shares_the_cache_only_for_group_query_attention(
    tiny_llama: Path, tmp_path: Path
) -> None:
    _, tokenizer, file, _, _ = _fused(tiny_llama, tmp_path / "onnx")
    for name, fused in (("model_ort.onnx", True), ("model.onnx", False)):
        config = json.loads(write_genai_config(file.parent, name).read_text())
        assert config["search"]["past_present_share_buffer"] is fused
        assert ("position_ids" in config["model"]["decoder"]["inputs"]) is not fused
    if genai_available():  # the runtime decodes the fused graph as ONNX Runtime does
        from compress.llm.genai import GenaiLM

        write_genai_config(file.parent, "model_ort.onnx")
        prompt = tokenizer(TEXTS[0])["input_ids"]
        genai = GenaiLM(file.parent).generate(prompt, 6).tokens
        assert genai == OrtLM(file).generate(prompt, 6).tokens


def test_a_head_size_the_kernel_cannot_take_keeps_optimums_attention(tmp_path: Path) -> None:
    small = build_tiny_llama(tmp_path / "small", layers=2, hidden=32)  # heads of 8
    model, tokenizer, file, counts, skipped = _fused(small, tmp_path / "onnx")
    assert skipped is not None and "head size 8" in skipped and "16" in skipped
    assert "GroupQueryAttention" not in counts
    graph = onnx.load(str(file)).graph
    assert "position_ids" in [i.name for i in graph.input]
    assert Counter(n.op_type for n in graph.node)["Softmax"] == 2
    assert max(lm_parity(model, file, tokenizer(TEXTS)["input_ids"], 1e-4).values()) < 1e-4


@pytest.mark.parametrize(
    ("case", "reason"),
    [("unfused", "not rotated by a fused RotaryEmbedding"), ("no mask", "no attention_mask")],
)
def test_a_graph_without_the_pattern_is_left_unchanged(
    tiny_llama: Path, tmp_path: Path, case: str, reason: str
) -> None:
    from compress.llm.attention import fuse_attention

    model, tokenizer = load_lm(str(tiny_llama))
    portable = export_with_past(model, tokenizer, tmp_path / "onnx", 17)
    proto = onnx.load(str(portable))  # optimum's graph: rotary not fused yet
    if case == "no mask":
        proto.graph.input.remove(next(i for i in proto.graph.input if i.name == "attention_mask"))
    before = proto.SerializeToString()
    found = fuse_attention(proto, 4, 2, 0.25)
    assert isinstance(found, str) and reason in found
    assert proto.SerializeToString() == before


def test_projection_biases_are_packed_with_the_weights(tmp_path: Path) -> None:
    """Qwen2-style Q/K/V biases: the packed QKV MatMul gets one packed bias."""
    folder = build_tiny_llama(tmp_path / "qwen2", layers=2, family="qwen2")
    model, tokenizer, file, counts, skipped = _fused(folder, tmp_path / "onnx")
    assert skipped is None and counts["GroupQueryAttention"] == 2
    graph = onnx.load(str(file)).graph
    adds = [n for n in graph.node if n.name.endswith("qkv_proj/Add")]
    assert len(adds) == 2
    assert max(lm_parity(model, file, tokenizer(TEXTS)["input_ids"], 1e-4).values()) < 1e-4
