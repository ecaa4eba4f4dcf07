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
from compress.passes import distill as distill_module
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
from tests.archs import (
    ARCHITECTURES,
    EXTRA_WORDS,
    assert_same_function,
    assert_student_is_teacher_layers,
    build,
    masked_reference,
)
from tests.conftest import widen_weights
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


def test_prune_shrinks_and_computes_the_unpruned_model_with_the_cut_parts_masked(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """The reloaded output is the unpruned model with layer 3 dropped, the recorded heads'
    output columns and the lost FFN neurons zeroed by hand (tests/archs.py)."""
    ctx = _ctx(tmp_path, tiny_dataset, "prune")
    heads = 0.25 if ADAPTERS[arch_model.key].prunes_heads else 0.0
    cfg = PruneConfig(heads=heads, ffn=0.5, layers=3, importance_batches=2)
    out = prune(arch_model, cfg, ctx)

    before, after = ctx.metrics["parameters"]
    assert after < before
    assert ctx.metrics["kept_layers"] == [0, 1, 2]
    assert ctx.metrics["ffn_width"] == [64, 32]
    assert ctx.metrics["flops_ratio"] > 1.3
    plan = {int(k): v for k, v in ctx.metrics.get("pruned_heads", {}).items()}
    if heads:
        assert sum(len(h) for h in plan.values()) == 3  # of 12
    reloaded = AutoModelForSequenceClassification.from_pretrained(out.path)
    assert reloaded.config.num_hidden_layers == 3
    assert sum(p.numel() for p in reloaded.parameters()) == after
    original = AutoModelForSequenceClassification.from_pretrained(arch_model.path)
    reference = masked_reference(original, [0, 1, 2], plan, reloaded)
    texts = tiny_dataset.validation.texts[:4]
    batch = AutoTokenizer.from_pretrained(out.path)(texts, padding=True, return_tensors="pt")
    assert_same_function(reloaded, reference, batch)


# the query and value projections, which LoRA adapts by default (written out, not imported)
LORA_MODULES = {"distilbert": ("q_lin", "v_lin"), "deberta-v2": ("query_proj", "value_proj")}


def test_lora_fine_tune_changes_only_query_value_and_head_then_distill_by_layers(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """The merged LoRA folder differs from its input only in the encoder's query/value
    projections and the head (and in some of them); distilling it keeps layers 1 and 3."""
    ctx = _ctx(tmp_path, tiny_dataset, "lora")
    tuned = fine_tune(
        arch_model, FineTuneConfig(method="lora", lora_r=2, epochs=1, min_steps=0), ctx
    )
    model = AutoModelForSequenceClassification.from_pretrained(tuned.path)
    original = AutoModelForSequenceClassification.from_pretrained(arch_model.path)
    assert model.config.num_labels == 2 and not (tuned.path / "adapter_config.json").exists()
    before, prefix = original.state_dict(), model.base_model_prefix + "."
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    adapted = LORA_MODULES.get(arch_model.key, ("query", "value"))
    in_encoder = [k for k in changed if k.startswith(prefix)]
    assert in_encoder and all(k.split(".")[-2] in adapted for k in in_encoder)
    ctx = _ctx(tmp_path, tiny_dataset, "distill")
    student = distill(tuned, DistillConfig(layers=[1, 3], epochs=1, hidden_weight=1.0), ctx)
    assert ctx.metrics["student_layers"] == [1, 3]
    model = AutoModelForSequenceClassification.from_pretrained(student.path)
    assert model.config.num_hidden_layers == 2


def test_distill_starts_the_student_as_the_teachers_kept_layers(
    arch_model: Artifact, tiny_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With training stubbed out, the saved student is teacher layers 1 and 3, unchanged."""
    monkeypatch.setattr(distill_module, "train", lambda *args, **kwargs: {})
    ctx = _ctx(tmp_path, tiny_dataset, "distill-init")
    out = distill(arch_model, DistillConfig(layers=[1, 3]), ctx)
    student = AutoModelForSequenceClassification.from_pretrained(out.path)
    teacher = AutoModelForSequenceClassification.from_pretrained(arch_model.path)
    texts = tiny_dataset.validation.texts[:4]
    batch = AutoTokenizer.from_pretrained(out.path)(texts, padding=True, return_tensors="pt")
    assert_student_is_teacher_layers(student, teacher, [1, 3], batch)


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
    """On a copy of the model with weights drawn wider (`widen_weights`: BERT's 0.02 init
    gives every text nearly the same logits, which would let a broken export pass)."""
    model = AutoModelForSequenceClassification.from_pretrained(arch_model.path)
    widen_weights(model)
    folder = tmp_path / "wide"
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(arch_model.path)
    tokenizer.save_pretrained(folder)
    wide = Artifact("hf", folder, arch_model.key, arch_model.variants)
    texts = tiny_dataset.test.texts[:6]
    feed = tokenizer(texts, padding=True, return_tensors="np")
    reference = ({k: v.astype("int64") for k, v in feed.items()}, _logits(folder, texts))
    cfg = QuantizeConfig(targets=["cpu", "tensorrt"], calibration_samples=16)
    assert_exports_to_int8_and_engine(
        wide,
        lambda name: _ctx(tmp_path, tiny_dataset, name),
        cfg,
        tmp_path,
        (reference[0], reference[1].numpy()),
    )


def test_every_architecture_in_the_adapter_table_has_a_tiny_model_test() -> None:
    from tests.vision_archs import HF_IMAGE_ARCHITECTURES  # ViT: tests/vision/test_hf_image.py

    assert set(ADAPTERS) == set(ARCHITECTURES) | (set(HF_IMAGE_ARCHITECTURES) & set(ADAPTERS))
    assert set(ARCHITECTURES) <= set(ADAPTERS)
