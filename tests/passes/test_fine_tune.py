from collections.abc import Callable

import torch
from transformers import AutoModelForSequenceClassification

from compress.artifacts import Artifact
from compress.passes.base import PassContext
from compress.passes.fine_tune import FineTuneConfig, apply


def _weights(path: object) -> dict[str, torch.Tensor]:
    return AutoModelForSequenceClassification.from_pretrained(path).state_dict()


def test_full_fine_tune_learns_and_saves_a_plain_model(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    ctx = make_ctx("ft")
    cfg = FineTuneConfig(epochs=8, lr=3e-3, batch_size=8, warmup_ratio=0.0)
    out = apply(tiny_hf, cfg, ctx)
    assert out.kind == "hf" and (out.path / "model.safetensors").is_file()
    assert (out.path / "tokenizer.json").is_file() or (out.path / "vocab.txt").is_file()
    history = ctx.metrics["epochs"]
    assert len(history) == 8
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the synthetic task is learnable: the kept epoch beats chance clearly
    assert ctx.metrics["best_val_accuracy"] >= 0.75
    assert max(h["val_accuracy"] for h in history) == ctx.metrics["best_val_accuracy"]


def test_fractional_epochs_stop_early(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    ctx = make_ctx("half")
    apply(tiny_hf, FineTuneConfig(epochs=0.5, batch_size=16), ctx)
    assert ctx.metrics["steps"] == 3  # 96 rows / 16 = 6 steps per epoch


def test_lora_is_merged_into_plain_weights(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    ctx = make_ctx("lora")
    cfg = FineTuneConfig(method="lora", epochs=1, lr=1e-2, batch_size=16, lora_r=4)
    out = apply(tiny_hf, cfg, ctx)
    before, after = _weights(tiny_hf.path), _weights(out.path)
    assert set(before) == set(after), "saved model must have no LoRA modules left"
    assert not any("lora" in k for k in after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("attention.self.query" in k for k in changed)
    assert any("classifier" in k for k in changed)
    assert not any("attention.self.key" in k for k in changed)  # not a LoRA target
