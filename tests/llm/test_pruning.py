"""Pruning decoder LMs: the model really shrinks, stays valid GQA, reloads, and computes what the
unpruned model computes with the removed layers, neurons and KV groups dropped or zeroed by hand
(so does a distilled student before training)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from compress.artifacts import Artifact, Variant
from compress.data import Dataset
from compress.llm import pruning
from compress.llm.models import load_lm, save_lm
from compress.passes.base import PassContext
from compress.tasks import get_task


def _batches(tokenizer, texts: list[str]) -> list[dict[str, torch.Tensor]]:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}]


TEXTS = ["the movie was good and fun", "a boring film", "the plot is not really great but fine"]
HEADS, GROUPS, HEAD = 4, 2, 16  # tests/llm_fixtures.py: 4 query heads of 16 in 2 KV groups


def _ctx(tmp_path: Path, data: Dataset, name: str) -> PassContext:
    work = tmp_path / name
    work.mkdir()
    task = get_task("text-generation")
    return PassContext(work, data, 32, 0, name, progress=False, task=task)


def _rows(full: torch.Tensor, part: torch.Tensor, size: int = 1) -> list[int]:
    """Which `size`-row blocks of `full` survive in `part` (blocks compared exactly)."""
    blocks = full.reshape(-1, size * full.shape[1])
    kept = part.reshape(-1, size * part.shape[1])
    same = (blocks.unsqueeze(0) == kept.unsqueeze(1)).all(-1)
    assert torch.all(same.sum(1) == 1), "a surviving row matches no (or several) original rows"
    return same.float().argmax(1).tolist()


def _reference(original: Any, keep: list[int], pruned: Any) -> Any:
    """By hand: `original` with only the layers `keep`, and in them the FFN neurons and KV
    groups that `pruned` lacks (found by matching its rows) silenced: zero gate/up rows and
    down-projection columns; zero output-projection columns of the groups' query heads."""
    ref = copy.deepcopy(original).eval()
    ref.model.layers = torch.nn.ModuleList(ref.model.layers[i] for i in keep)
    ref.config.num_hidden_layers = len(keep)
    with torch.no_grad():
        for full, small in zip(ref.model.layers, pruned.model.layers, strict=True):
            mlp = full.mlp
            kept = _rows(mlp.gate_proj.weight, small.mlp.gate_proj.weight)
            assert kept == _rows(mlp.up_proj.weight, small.mlp.up_proj.weight)
            lost = [j for j in range(mlp.gate_proj.out_features) if j not in kept]
            mlp.gate_proj.weight[lost] = 0
            mlp.up_proj.weight[lost] = 0
            mlp.down_proj.weight[:, lost] = 0
            attention = full.self_attn
            groups = _rows(attention.k_proj.weight, small.self_attn.k_proj.weight, HEAD)
            per_group = HEADS // GROUPS
            for group in set(range(GROUPS)) - set(groups):
                for head in range(group * per_group, (group + 1) * per_group):
                    attention.o_proj.weight[:, head * HEAD : (head + 1) * HEAD] = 0
    return ref


def _assert_same_logits(model: Any, reference: Any, ids: torch.Tensor) -> None:
    with torch.inference_mode():
        got = model.eval()(ids, use_cache=False).logits
        expected = reference(ids, use_cache=False).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_width_pruning_keeps_whole_kv_groups_reloads_and_masks_the_rest(
    tiny_llama: Path, tmp_path: Path
) -> None:
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
    original, _ = load_lm(str(tiny_llama))
    _assert_same_logits(again, _reference(original, [0, 1, 2, 3], again), ids)
    assert sum(p.numel() for p in again.parameters()) < sum(
        p.numel() for p in load_lm(str(tiny_llama))[0].parameters()
    )


def test_the_least_influential_layer_is_the_one_the_pass_drops(
    tiny_llama: Path, corpus: Dataset, tmp_path: Path
) -> None:
    """`prune(layers=3)` drops the layer that adds nothing, and the output is unchanged."""
    from compress.passes.prune import PruneConfig, apply

    model, tokenizer = load_lm(str(tiny_llama))
    idle = model.model.layers[2]
    with torch.no_grad():  # a layer that adds nothing to the residual stream: output = input
        idle.self_attn.o_proj.weight.zero_()
        idle.mlp.down_proj.weight.zero_()
    influence = pruning.layer_influence(model, _batches(tokenizer, TEXTS))
    assert influence[2] == pytest.approx(0.0, abs=1e-6)
    assert min(influence[:2] + influence[3:]) > 1e-4
    save_lm(model, tokenizer, tmp_path / "idle")
    artifact = Artifact(
        "hf", tmp_path / "idle", "idle", [Variant("fp32", "torch", "fp32", "portable")]
    )
    ctx = _ctx(tmp_path, corpus, "depth")
    out = apply(artifact, PruneConfig(layers=3), ctx)
    assert ctx.metrics["kept_layers"] == [0, 1, 3]
    pruned, _ = load_lm(str(out.path))
    assert pruned.config.num_hidden_layers == 3
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1, 2]
    ids = torch.tensor([tokenizer(TEXTS[1]).input_ids])
    _assert_same_logits(pruned, model, ids)  # removing an identity layer changes nothing
    with torch.inference_mode():
        cached = pruned.generate(ids, max_new_tokens=4, do_sample=False)  # the KV cache works
        expected = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert torch.equal(cached, expected)


def test_the_pass_cuts_depth_and_width_to_the_masked_unpruned_model(
    tiny_llama: Path, corpus: Dataset, tmp_path: Path
) -> None:
    """`prune(layers=[0, 1, 3], ffn=0.5, heads=0.5)` computes the unpruned model with layer 2
    dropped from its list and the lost neurons and KV group zeroed by hand."""
    from compress.passes.prune import PruneConfig, apply

    artifact = Artifact("hf", tiny_llama, "lm", [Variant("fp32", "torch", "fp32", "portable")])
    ctx = _ctx(tmp_path, corpus, "width")
    out = apply(artifact, PruneConfig(layers=[0, 1, 3], ffn=0.5, heads=0.5), ctx)
    assert ctx.metrics["kv_groups"] == [2, 1] and ctx.metrics["ffn_width"] == [128, 64]
    pruned, tokenizer = load_lm(str(out.path))
    original, _ = load_lm(str(tiny_llama))
    ids = torch.tensor([tokenizer(text).input_ids for text in TEXTS[:1]])
    _assert_same_logits(pruned, _reference(original, [0, 1, 3], pruned), ids)


def test_a_distilled_lm_starts_as_the_teachers_picked_layers(
    tiny_llama: Path, corpus: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With training stubbed out, `distill(layers=2)` saves teacher layers 0 and 2 unchanged."""
    from compress.passes.distill import DistillConfig, apply
    from compress.passkit import lm_training as lm_common

    monkeypatch.setattr(lm_common, "train_lm", lambda *args, **kwargs: {})
    artifact = Artifact("hf", tiny_llama, "lm", [Variant("fp32", "torch", "fp32", "portable")])
    ctx = _ctx(tmp_path, corpus, "distill")
    out = apply(artifact, DistillConfig(layers=2), ctx)
    assert ctx.metrics["student_layers"] == [0, 2]
    student, tokenizer = load_lm(str(out.path))
    teacher, _ = load_lm(str(tiny_llama))
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        source = key.replace("layers.1.", "layers.2.")
        assert torch.equal(value, t_state[source]), key
    reference = copy.deepcopy(teacher)
    reference.model.layers = torch.nn.ModuleList([teacher.model.layers[0], teacher.model.layers[2]])
    ids = torch.tensor([tokenizer(TEXTS[2]).input_ids])
    _assert_same_logits(student, reference, ids)
