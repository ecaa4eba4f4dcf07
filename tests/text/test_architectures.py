"""Every architecture of the adapter table through the passes that cut models.

Tiny config-built models (random weights) of each family, each with the
tokenizer kind that family uses: the tests check shapes, reloading and
exactness, which hold for any weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact, Variant
from compress.data import Dataset
from compress.passes.base import PassContext
from compress.passes.distill import DistillConfig
from compress.passes.distill import apply as distill
from compress.passes.fine_tune import FineTuneConfig
from compress.passes.fine_tune import apply as fine_tune
from compress.passes.prune import PruneConfig
from compress.passes.prune import apply as prune
from compress.passes.prune_vocab import PruneVocabConfig
from compress.passes.prune_vocab import apply as prune_vocab
from compress.passes.quantize import QuantizeConfig
from compress.text.adapters import ADAPTERS
from compress.text.vocab import tokenizer_kind, vocabulary
from tests.archs import ARCHITECTURES, EXTRA_WORDS, build
from tests.int8_checks import assert_exports_to_int8_and_engine

KINDS = {
    "bert": "WordPiece",
    "electra": "WordPiece",
    "distilbert": "WordPiece",
    "roberta": "BPE",
    "xlm-roberta": "Unigram",
    "deberta-v2": "Unigram",
}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Artifact:
    arch = request.param
    folder = build(arch, tmp_path_factory.mktemp(arch) / "model")
    return Artifact("hf", folder, arch, [Variant("fp32", "torch", "fp32", "portable")])


def _ctx(tmp_path: Path, data: Dataset, name: str) -> PassContext:
    work = tmp_path / name
    work.mkdir()
    return PassContext(work, data, 32, 0, name, progress=False)


def _logits(folder: Path, texts: list[str]) -> torch.Tensor:
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits


def test_every_architecture_has_a_tokenizer_kind_prune_vocab_reads(arch_model: Artifact) -> None:
    assert tokenizer_kind(arch_model.path) == KINDS[arch_model.key]
    config = AutoModelForSequenceClassification.from_pretrained(arch_model.path).config
    assert config.model_type in ADAPTERS


def test_prune_shrinks_and_the_folder_reloads_with_the_same_outputs(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_dataset, "prune")
    heads = 0.25 if ADAPTERS[arch_model.key].prunes_heads else 0.0
    cfg = PruneConfig(heads=heads, ffn=0.5, layers=3, importance_batches=2)
    out = prune(arch_model, cfg, ctx)

    before, after = ctx.metrics["parameters"]
    assert after < before
    assert ctx.metrics["kept_layers"] == [0, 1, 2]
    assert ctx.metrics["ffn_width"] == [64, 32]
    assert ctx.metrics["flops_ratio"] > 1.3
    if heads:
        assert sum(len(h) for h in ctx.metrics["pruned_heads"].values()) == 3  # of 12
    reloaded = AutoModelForSequenceClassification.from_pretrained(out.path)
    assert reloaded.config.num_hidden_layers == 3
    assert sum(p.numel() for p in reloaded.parameters()) == after
    # a second save/load round trip gives the same logits: the config describes the shapes
    texts = tiny_dataset.validation.texts[:4]
    again = tmp_path / "again"
    reloaded.save_pretrained(again)
    AutoTokenizer.from_pretrained(out.path).save_pretrained(again)
    torch.testing.assert_close(_logits(out.path, texts), _logits(again, texts))


def test_distill_by_layers_and_lora_fine_tune(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_dataset, "lora")
    tuned = fine_tune(
        arch_model, FineTuneConfig(method="lora", lora_r=2, epochs=1, min_steps=0), ctx
    )
    assert AutoModelForSequenceClassification.from_pretrained(tuned.path).config.num_labels == 2
    ctx = _ctx(tmp_path, tiny_dataset, "distill")
    student = distill(tuned, DistillConfig(layers=[1, 3], epochs=1, hidden_weight=1.0), ctx)
    assert ctx.metrics["student_layers"] == [1, 3]
    model = AutoModelForSequenceClassification.from_pretrained(student.path)
    assert model.config.num_hidden_layers == 2


def test_prune_vocab_keeps_the_outputs_of_kept_text(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_dataset, "vocab")
    out = prune_vocab(arch_model, PruneVocabConfig(), ctx)
    assert ctx.metrics["tokenizer"] == KINDS[arch_model.key]
    assert ctx.metrics["vocab_after"] < ctx.metrics["vocab_before"]
    assert ctx.metrics["parameters_after"] < ctx.metrics["parameters_before"]
    new_vocab = vocabulary(out.path)
    assert sorted(new_vocab.values()) == list(range(len(new_vocab)))

    old_tok, new_tok = (AutoTokenizer.from_pretrained(p) for p in (arch_model.path, out.path))
    texts = tiny_dataset.train.texts[:6]
    for text in texts:  # the training texts consist of kept tokens: identical splits
        assert new_tok.tokenize(text) == old_tok.tokenize(text)
    torch.testing.assert_close(_logits(out.path, texts), _logits(arch_model.path, texts))
    unseen = " ".join(EXTRA_WORDS)  # words the corpus never used still encode
    assert new_tok(unseen)["input_ids"]
    if KINDS[arch_model.key] == "BPE":  # byte-level: never unknown, just more pieces
        assert new_tok.unk_token_id not in new_tok(unseen)["input_ids"]
        assert len(new_tok.tokenize(unseen)) >= len(old_tok.tokenize(unseen))


def test_export_and_tensorrt_form_int8(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    cfg = QuantizeConfig(targets=["cpu", "tensorrt"], calibration_samples=16)
    assert_exports_to_int8_and_engine(
        arch_model, lambda name: _ctx(tmp_path, tiny_dataset, name), cfg, tmp_path
    )


def test_every_architecture_in_the_adapter_table_has_a_tiny_model_test() -> None:
    from tests.vision_archs import HF_IMAGE_ARCHITECTURES  # ViT: tests/vision/test_hf_image.py

    assert set(ADAPTERS) == set(ARCHITECTURES) | (set(HF_IMAGE_ARCHITECTURES) & set(ADAPTERS))
    assert set(ARCHITECTURES) <= set(ADAPTERS)
