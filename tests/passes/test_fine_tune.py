from collections.abc import Callable

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact
from compress.passes.base import PassContext
from compress.passes.fine_tune import FineTuneConfig, apply


def _weights(path: object) -> dict[str, torch.Tensor]:
    return AutoModelForSequenceClassification.from_pretrained(path).state_dict()


def test_full_fine_tune_learns_and_saves_a_plain_model(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    """8 epochs: the loss falls, validation accuracy >= 0.75, and the folder holds the best
    epoch's weights (re-measured here from the saved files)."""
    ctx = make_ctx("ft")
    cfg = FineTuneConfig(epochs=8, lr=3e-3, batch_size=8, warmup_ratio=0.0, min_steps=0)
    out = apply(tiny_hf, cfg, ctx)
    assert out.kind == "hf" and (out.path / "model.safetensors").is_file()
    assert (out.path / "tokenizer.json").is_file() or (out.path / "vocab.txt").is_file()
    history = ctx.metrics["epochs"]
    assert len(history) == 8
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the synthetic task is learnable: the kept epoch beats chance clearly
    assert ctx.metrics["best_val_accuracy"] >= 0.75
    assert max(h["val_accuracy"] for h in history) == ctx.metrics["best_val_accuracy"]
    # the saved folder is the kept (best) epoch's model: measured here, it scores the same
    model = AutoModelForSequenceClassification.from_pretrained(out.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(out.path)
    validation = ctx.data.validation
    batch = tokenizer(list(validation.texts), padding=True, truncation=True, max_length=32)
    with torch.inference_mode():
        logits = model(**batch.convert_to_tensors("pt")).logits
    accuracy = float((logits.argmax(-1).numpy() == validation.labels).mean())
    assert accuracy == ctx.metrics["best_val_accuracy"]
    assert ctx.metrics["learned"] == {"learned": True, "majority_class_val_accuracy": 0.5}


def test_fractional_epochs_stop_early(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    ctx = make_ctx("half")
    apply(tiny_hf, FineTuneConfig(epochs=0.5, batch_size=16, min_steps=0), ctx)
    assert ctx.metrics["steps"] == 3  # 96 rows / 16 = 6 steps per epoch


def test_a_small_dataset_trains_at_least_min_steps(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    ctx = make_ctx("min-steps")
    apply(tiny_hf, FineTuneConfig(epochs=1, batch_size=16, min_steps=15), ctx)
    assert ctx.metrics["steps"] == 15  # 96 rows / 16 = 6 steps per epoch: 2.5 epochs
    assert len(ctx.metrics["epochs"]) == 3
    assert FineTuneConfig().min_steps == 300


def test_a_model_that_learned_nothing_is_flagged(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    from compress.passes.fine_tune import _learned

    ctx = make_ctx("nothing")
    logged: list[str] = []
    ctx.log = logged.append  # type: ignore[method-assign]
    labels = list(ctx.data.validation.labels)
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    cfg = FineTuneConfig(epochs=4)
    verdict = _learned({"best_val_accuracy": majority, "steps": 72}, ctx, cfg)
    assert verdict == {"learned": False, "majority_class_val_accuracy": majority}
    assert len(logged) == 1 and "has not learned the task" in logged[0]
    assert "after 72 steps" in logged[0] and "epochs, now 4" in logged[0]
    assert _learned({"best_val_accuracy": majority + 0.05, "steps": 72}, ctx, cfg)["learned"]
    assert len(logged) == 1  # a real run that learned: test_full_fine_tune_learns_...


def test_lora_is_merged_into_plain_weights(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    """LoRA is merged away: plain BERT keys, query and classifier changed, key (no adapter) not."""
    ctx = make_ctx("lora")
    cfg = FineTuneConfig(method="lora", epochs=1, lr=1e-2, batch_size=16, lora_r=4, min_steps=0)
    out = apply(tiny_hf, cfg, ctx)
    before, after = _weights(tiny_hf.path), _weights(out.path)
    assert set(before) == set(after), "saved model must have no LoRA modules left"
    assert not any("lora" in k for k in after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("attention.self.query" in k for k in changed)
    assert any("classifier" in k for k in changed)
    assert not any("attention.self.key" in k for k in changed)  # not a LoRA target
