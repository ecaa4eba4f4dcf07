"""Loading causal LMs: folders, GGUF files, and the one-line refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compress.errors import ModelLoadError
from compress.llm.models import check_causal, lm_meta, load_lm, resolve_lm_source, save_lm
from tests.llm_fixtures import WORDS


def test_a_saved_model_reloads_with_identical_logits(tiny_llama: Path, tmp_path: Path) -> None:
    import torch

    model, tokenizer = load_lm(str(tiny_llama))
    save_lm(model, tokenizer, tmp_path / "copy")
    again, _ = load_lm(str(tmp_path / "copy"))
    ids = torch.tensor([tokenizer("the movie was good").input_ids])
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert tokenizer("a").input_ids[0] == tokenizer.bos_token_id  # BOS added, as SmolLM2's


def test_parameters_count_a_tied_matrix_once(tiny_llama: Path) -> None:
    model, _ = load_lm(str(tiny_llama))
    meta = lm_meta(model)
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    assert meta["macs_per_token"] == meta["parameters"]  # the tied head multiplies by it too
    assert meta["kv_heads"] == 2 and meta["heads"] == 4
    assert embedding == len(WORDS) * 64


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
