from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact
from compress.errors import UserError
from compress.passes.base import PassContext
from compress.passes.export_onnx import ExportOnnxConfig
from compress.passes.export_onnx import apply as export
from compress.passes.prune import PruneConfig, apply
from compress.text.pruning import heads_to_prune, round_width, select_layers
from tests.archs import assert_same_function, blocks, last_hidden, masked_reference, row_indices

TEXTS = ["good film", "the plot was dull and the actor was not really fine", "a superb story"]


def _batch(folder: Path) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


def test_round_width() -> None:
    assert round_width(770.4, 8, 1536) == 768
    assert round_width(3, 8, 64) == 8  # never below one multiple
    assert round_width(70, 8, 64) == 64  # never above the original
    assert round_width(33, 1, 64) == 33


def test_heads_to_prune_is_global_and_keeps_a_minimum() -> None:
    scores = [np.array([0.1, 0.2, 5.0, 6.0]), np.array([0.05, 0.06, 0.07, 9.0])]
    plan = heads_to_prune(scores, 0.5, [0, 1], min_heads=1)
    assert plan == {0: [0], 1: [0, 1, 2]}  # the four lowest scores, wherever they are
    plan = heads_to_prune(scores, 0.75, [0, 1], min_heads=2)
    assert {i: len(h) for i, h in plan.items()} == {0: 2, 1: 2}
    assert heads_to_prune(scores, 0.5, [1], min_heads=1) == {1: [0, 1]}


def test_select_layers_by_regex() -> None:
    names = [f"bert.encoder.layer.{i}" for i in range(4)]
    assert select_layers(names, [".*"], [r".*\.3"]) == [0, 1, 2]
    assert select_layers(names, [r".*layer\.(0|2)"], []) == [0, 2]


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_model_shrinks_computes_the_masked_unpruned_model_and_exports(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext], importance: str
) -> None:
    ctx = make_ctx(f"prune-{importance}")
    cfg = PruneConfig(heads=0.5, ffn=0.5, importance=importance, round_to=8, importance_batches=2)  # type: ignore[arg-type]
    out = apply(tiny_hf, cfg, ctx)
    model = AutoModelForSequenceClassification.from_pretrained(out.path).eval()
    layers = model.bert.encoder.layer
    assert model.config.intermediate_size == 32
    assert all(layer.intermediate.dense.out_features == 32 for layer in layers)
    assert all(layer.intermediate.dense.out_features % 8 == 0 for layer in layers)
    total_heads = sum(layer.attention.self.num_attention_heads for layer in layers)
    assert total_heads == 4  # 8 heads before, half removed, at least one per layer
    assert all(layer.attention.self.num_attention_heads >= 1 for layer in layers)
    assert ctx.metrics["flops_ratio"] > 1.5
    assert ctx.metrics["parameters"][1] == sum(p.numel() for p in model.parameters())

    # the saved folder computes the unpruned model with the removed heads and neurons masked
    heads = {int(k): v for k, v in ctx.metrics["pruned_heads"].items()}
    assert {int(k): sorted(v) for k, v in model.config.pruned_heads.items()} == heads
    original = AutoModelForSequenceClassification.from_pretrained(tiny_hf.path)
    reference = masked_reference(original, range(4), heads, model)
    if importance == "magnitude":  # the kept neurons are the 32 of largest weight norm
        for full, small in zip(blocks(original), blocks(model), strict=True):
            norms = full.intermediate.dense.weight.pow(2).sum(1)
            norms += full.output.dense.weight.pow(2).sum(0)
            kept = row_indices(full.intermediate.dense.weight, small.intermediate.dense.weight)
            assert kept == sorted(norms.argsort(descending=True)[:32].tolist())
    batch = _batch(out.path)
    assert_same_function(model, reference, batch)
    assert not torch.allclose(last_hidden(model, batch), last_hidden(original, batch), atol=1e-2)
    export_ctx = make_ctx(f"export-{importance}")
    exported = export(out, ExportOnnxConfig(), export_ctx)
    assert export_ctx.metrics["parity"]["model.onnx"] <= 1e-4
    assert export_ctx.metrics["parity"]["model_ort.onnx"] <= 1e-4
    assert onnx.load(str(exported.path / "model.onnx")).graph.node


def test_cut_layers_and_neurons_are_the_masked_model_and_recovery_retrains_it(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    """Without recovery the output is the unpruned model with layers 1 and 3 dropped and the
    lost neurons zeroed by hand; with recovery the same cut is trained further."""
    ctx = make_ctx("layers")
    cfg = PruneConfig(layers=2, ffn=0.25, importance="magnitude")
    out = apply(tiny_hf, cfg, ctx)
    model = AutoModelForSequenceClassification.from_pretrained(out.path).eval()
    assert model.config.num_hidden_layers == 2 and ctx.metrics["kept_layers"] == [0, 2]
    assert model.config.intermediate_size == 48
    original = AutoModelForSequenceClassification.from_pretrained(tiny_hf.path)
    reference = masked_reference(original, [0, 2], {}, model)
    batch = _batch(out.path)
    assert_same_function(model, reference, batch)

    ctx = make_ctx("recovery")
    cfg = PruneConfig(
        layers=2,
        ffn=0.25,
        importance="magnitude",
        recovery={"epochs": 1, "batch_size": 16},  # type: ignore[arg-type]
    )
    recovered = AutoModelForSequenceClassification.from_pretrained(apply(tiny_hf, cfg, ctx).path)
    assert recovered.config.num_hidden_layers == 2 and recovered.config.intermediate_size == 48
    assert len(ctx.metrics["recovery"]["epochs"]) == 1
    assert not torch.allclose(last_hidden(recovered, batch), last_hidden(model, batch), atol=1e-3)


def test_ignore_everything_is_an_error(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    with pytest.raises(UserError, match="match no layer"):
        apply(tiny_hf, PruneConfig(heads=0.5, ignore=[".*"], importance="magnitude"), make_ctx("x"))


def test_layer_regexes_are_validated() -> None:
    with pytest.raises(ValueError, match="valid regex"):
        PruneConfig(targets=["("])
    with pytest.raises(ValueError, match="valid regex"):
        PruneConfig(ignore=["[a-"])


def test_layers_cut_after_heads_keep_the_heads_record_and_the_function(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    heads = apply(tiny_hf, PruneConfig(heads=0.5, importance="magnitude"), make_ctx("heads"))
    ctx = make_ctx("layers")
    out = apply(heads, PruneConfig(layers=[1, 3]), ctx)
    before = AutoModelForSequenceClassification.from_pretrained(heads.path).config.pruned_heads
    model = AutoModelForSequenceClassification.from_pretrained(out.path)
    expected = {new: sorted(before[old]) for new, old in enumerate([1, 3]) if old in before}
    assert {int(k): sorted(v) for k, v in model.config.pruned_heads.items()} == expected
    kept = [model.bert.encoder.layer[i].attention.self.num_attention_heads for i in range(2)]
    assert kept == [2 - len(before.get(old, [])) for old in (1, 3)]
    # and it computes the head-pruned model with layers 0 and 2 dropped from its list by hand
    reference = AutoModelForSequenceClassification.from_pretrained(heads.path).eval()
    layers = reference.bert.encoder.layer
    reference.bert.encoder.layer = torch.nn.ModuleList([layers[1], layers[3]])
    assert_same_function(model, reference, _batch(out.path))
