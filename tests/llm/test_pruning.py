"""Pruning decoder LMs: the model really shrinks, stays valid GQA, and reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compress.llm import pruning
from compress.llm.models import load_lm, save_lm


def _batches(tokenizer, texts: list[str]) -> list[dict[str, torch.Tensor]]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}]


TEXTS = ["the movie was good and fun", "a boring film", "the plot is not really great but fine"]


def test_width_pruning_keeps_whole_kv_groups_and_reloads(tiny_llama: Path, tmp_path: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    ffn, groups = pruning.width_scores(model, _batches(tokenizer, TEXTS))
    assert len(ffn) == 4 and ffn[0].shape == (128,) and groups[0].shape == (2,)
    pruning.prune_ffn(model, ffn, 32)
    pruning.prune_kv_groups(model, groups, 1)
    config = model.config
    assert (config.intermediate_size, config.num_attention_heads) == (32, 2)
    assert (config.num_key_value_heads, config.head_dim) == (1, 16)  # head_dim kept: 64 / 4
    attention = model.model.layers[0].self_attn
    assert attention.q_proj.weight.shape == (32, 64) and attention.k_proj.weight.shape == (16, 64)
    assert attention.o_proj.weight.shape == (64, 32)
    ids = torch.tensor([tokenizer(TEXTS[0]).input_ids])
    with torch.inference_mode():
        before = model(ids).logits
    save_lm(model, tokenizer, tmp_path / "pruned")
    again, _ = load_lm(str(tmp_path / "pruned"))
    with torch.inference_mode():
        assert torch.allclose(again(ids).logits, before, atol=1e-6)
    assert sum(p.numel() for p in again.parameters()) < sum(
        p.numel() for p in load_lm(str(tiny_llama))[0].parameters()
    )


def test_the_least_influential_layer_is_the_one_dropped(tiny_llama: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    idle = model.model.layers[2]
    with torch.no_grad():  # a layer that adds nothing to the residual stream: output = input
        idle.self_attn.o_proj.weight.zero_()
        idle.mlp.down_proj.weight.zero_()
    influence = pruning.layer_influence(model, _batches(tokenizer, TEXTS))
    assert influence[2] == pytest.approx(0.0, abs=1e-6)
    assert min(influence[:2] + influence[3:]) > 1e-4
    ids = torch.tensor([tokenizer(TEXTS[1]).input_ids])
    with torch.inference_mode():
        before = model(ids).logits
    pruning.drop_layers(model, [0, 1, 3])
    assert model.config.num_hidden_layers == 3
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    with torch.inference_mode():  # removing an identity layer changes nothing
        assert torch.allclose(model(ids).logits, before, atol=1e-5)
        cached = model.generate(ids, max_new_tokens=4, do_sample=False)  # the KV cache still works
    assert cached.shape[1] == ids.shape[1] + 4
