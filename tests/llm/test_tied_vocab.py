"""Tied embeddings stay one matrix through export_onnx, and a large tied vocabulary shrinks
with the rest under the default weight-only INT4 (tests compress/llm/tied.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv
from tests.llm_fixtures import build_tiny_llama

RECIPE = """
task: text-generation
model: {{source: {model}}}
data: {{source: {data}, validation_size: 16, test_size: 16, max_length: 32}}
passes:
  - export_onnx: {{atol: 0.001}}
{quantize}
"""


def _tied_model(folder: Path, family: str, vocab: int, layers: int = 2) -> Path:
    """A random tied decoder of hidden size 64 whose weights are mostly its `vocab` x 64
    embedding (the word-level tokenizer of `build_tiny_llama` uses its first ids)."""
    import torch
    import transformers

    build_tiny_llama(folder, layers=1)  # the tokenizer; the model is replaced below
    shape = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    if family == "gemma3":  # its exporter folds the head's transpose into a second copy
        model: torch.nn.Module = transformers.Gemma3ForCausalLM(
            transformers.Gemma3TextConfig(**shape)
        )
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape))
    model.save_pretrained(folder)
    return folder


def _parameter_bytes(folder: Path) -> int:
    """The original's size as the report counts it: its safetensors (a tied matrix once)."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def _onnx_bytes(file: Path) -> int:
    return sum(f.stat().st_size for f in file.parent.glob(file.name + "*"))


def _run(tmp_path: Path, model: Path, quantize: str = "") -> Path:
    data = write_labelled_csv(tmp_path, 80, 0)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=model, data=data, quantize=quantize))
    out = tmp_path / "run"
    run_recipe(load_recipe(recipe), out, progress=False, report=False)
    return out


@pytest.mark.parametrize("family", ["gemma3", "llama"])
def test_a_tied_embedding_is_exported_once(family: str, tmp_path: Path) -> None:
    # 65536 x 64 embedding (16.8 MB): the graph's own bytes (~0.1 MB of nodes) stay under 1%
    model = _tied_model(tmp_path / "model", family, 65536)
    original = _parameter_bytes(model)
    out = _run(tmp_path, model)
    step = out / "01-export_onnx"
    for name in ("model.onnx", "model_ort.onnx"):
        file = step / name
        assert _onnx_bytes(file) <= 1.01 * original, name
        graph = onnx.load(str(file)).graph
        tables = [t.name for t in graph.initializer if 65536 in t.dims]
        assert tables == ["model.embed_tokens.weight"], name
    # the parity check ran on the files as written (the rewrite is exact)
    manifest = (step / "manifest.json").read_text()
    assert '"parity"' in manifest


def test_a_large_tied_vocabulary_is_4x_smaller_with_the_default_int4(tmp_path: Path) -> None:
    # 131072 x 64: the embedding is 94% of the weights, so the default must shrink it too
    model = _tied_model(tmp_path / "model", "llama", 131072)
    original = _parameter_bytes(model)
    out = _run(tmp_path, model, "  - quantize: {weight_only: {}}")
    int4 = out / "02-quantize" / "model_int4.onnx"
    ratio = original / _onnx_bytes(int4)
    assert ratio >= 4.0, f"{ratio:.2f}x"
    graph = onnx.load(str(int4)).graph
    lookups = [n.op_type for n in graph.node if "input_ids" in n.input]
    assert lookups == ["GatherBlockQuantized"]  # the lookup reads the quantized head
    head = next(n for n in graph.node if n.op_type == "MatMulNBits" and "lm_head" in n.name)
    assert next(a.i for a in head.attribute if a.name == "bits") == 4  # lm_head_bits: auto
    floats = [
        t.name
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) in ([131072, 64], [64, 131072])
    ]
    assert floats == []  # no float copy of the embedding is left


def test_gptq_lowers_the_output_error_that_round_to_nearest_leaves() -> None:
    import numpy as np

    from compress.llm.calibrated import gptq_symmetric

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((256, 128)).astype(np.float32) * 0.05
    x = rng.standard_normal((512, 128)) * (1 + 3 * rng.random(128))  # uneven input channels
    x = x @ (np.eye(128) + 0.3 * rng.standard_normal((128, 128)) / np.sqrt(128))  # correlated
    codes, scales = gptq_symmetric(weight, x.T @ x, 32)
    assert codes.max() <= 15 and scales.shape == (256, 4)
    gptq = (codes.astype(np.float64) - 8) * np.repeat(scales, 32, axis=1)
    blocks = weight.reshape(256, 4, 32)
    extreme = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], -1) / -8
    rtn = ((np.clip(np.rint(blocks / extreme) + 8, 0, 15) - 8) * extreme).reshape(256, 128)
    error = {
        name: float(((x @ (weight - w).T) ** 2).mean())
        for name, w in [("gptq", gptq), ("rtn", rtn)]
    }
    assert error["gptq"] < 0.8 * error["rtn"], error


def test_a_gptq_file_shares_its_4_bit_head_with_the_lookup(
    tiny_llama: Path, tmp_path: Path
) -> None:
    import numpy as np

    from compress.llm.export import export_with_past
    from compress.llm.int4 import quantize_weights
    from compress.llm.models import load_lm
    from compress.llm.options import WeightOnlyConfig
    from compress.llm.runtime import OrtLM

    model, tokenizer = load_lm(str(tiny_llama))
    exported = export_with_past(model, tokenizer, tmp_path / "fp32", 18)
    sequences = [[1, 5, 6, 7, 8, 9, 10, 11], [1, 12, 13, 14, 15, 16]]
    wo = WeightOnlyConfig(block_size=16, algorithm="gptq", lm_head_bits=4, lm_head_algorithm="gptq")
    target = tmp_path / "model_int4.onnx"
    summary = quantize_weights(exported, target, wo, False, sequences)
    assert summary["embedding_shares_lm_head"] is True
    assert summary["groups"]["lm_head"]["algorithm"] == "gptq"
    assert summary["groups"]["layers"]["symmetric"] is True
    graph = onnx.load(str(target)).graph
    assert [n.op_type for n in graph.node if "input_ids" in n.input] == ["GatherBlockQuantized"]
    constants = {t.name for t in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]
    ids = np.asarray([sequences[0]], np.int64)
    logits = OrtLM(target).logits(ids, np.ones_like(ids))
    assert np.isfinite(logits).all() and logits.shape == (1, 8, 36)
    with pytest.raises(ValueError, match="lm_head_bits: 4"):
        WeightOnlyConfig(lm_head_bits=8, lm_head_algorithm="gptq")
