"""Loading causal LMs: folders, GGUF files, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import ModelLoadError
from compress.llm.models import check_causal, lm_meta, load_lm, resolve_lm_source, save_lm
from tests.llm_fixtures import WORDS


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return dict(load_file(str(folder / "model.safetensors")))


def test_a_saved_model_reloads_with_identical_logits(tiny_llama: Path, tmp_path: Path) -> None:
    """load_lm gives the folder's exact FP32 weights; save_lm writes them back bit for bit,
    and the copy computes the same logits (tied head included)."""
    import torch

    source = _weights(tiny_llama)
    model, tokenizer = load_lm(str(tiny_llama))
    state = model.state_dict()
    for name, tensor in source.items():
        assert state[name].dtype == torch.float32 and torch.equal(state[name], tensor), name
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    save_lm(model, tokenizer, tmp_path / "copy")
    copied = _weights(tmp_path / "copy")
    assert copied.keys() == source.keys()
    assert all(torch.equal(copied[k], source[k]) for k in source)
    again, _ = load_lm(str(tmp_path / "copy"))
    ids = torch.tensor([tokenizer("the movie was good").input_ids])
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert tokenizer("a").input_ids[0] == tokenizer.bos_token_id  # BOS added, as SmolLM2's


# tiny Llama (tests/llm_fixtures.py), counted by hand: hidden 64, MLP 128, 4 heads of 16 with
# 2 KV heads (K and V project to 32), no biases, two RMSNorm weights per layer, 4 layers
LAYER = 64 * 64 + 2 * (64 * 32) + 64 * 64 + 3 * (64 * 128) + 2 * 64
BODY = 4 * LAYER + 64  # and the final norm


@pytest.mark.parametrize("tie", [True, False])
def test_parameters_count_a_tied_matrix_once(tiny_llama: Path, tmp_path: Path, tie: bool) -> None:
    """Tied: the embedding counted once and used as the head's MACs too; untied: both."""
    from tests.llm_fixtures import build_tiny_llama

    folder = tiny_llama if tie else build_tiny_llama(tmp_path / "untied", tie=False)
    model, _ = load_lm(str(folder))
    meta = lm_meta(model)
    table = len(WORDS) * 64
    assert meta["parameters"] == table + BODY + (0 if tie else table)
    assert meta["macs_per_token"] == BODY + table  # the lookup is free, the head is not
    assert meta["kv_heads"] == 2 and meta["heads"] == 4 and meta["layers"] == 4
    assert meta["vocab_size"] == len(WORDS) == 36


def test_an_encoder_is_refused_in_one_line(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load_lm(str(tiny_model_dir))
    message = str(err.value)
    assert "BertForSequenceClassification has no causal language-model head" in message
    assert "\n" not in message


def test_check_causal_accepts_decoders_and_refuses_classifiers() -> None:
    check_causal(["LlamaForCausalLM"], "llama", "x")
    with pytest.raises(ModelLoadError, match="no causal language-model head"):
        check_causal(["LlamaForSequenceClassification"], "llama", "x")


def test_a_gguf_of_an_unknown_architecture_is_refused(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "no-such-arch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert resolve_lm_source(str(path)) == str(path.resolve())
    with pytest.raises(ModelLoadError) as err:
        load_lm(str(path))
    assert "transformers cannot load this GGUF" in str(err.value)
    assert "no-such-arch" in str(err.value)


def test_a_file_that_is_not_gguf_is_not_a_model_source(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match=r"Hugging Face model folder or a \.gguf file"):
        resolve_lm_source(str(weights))
