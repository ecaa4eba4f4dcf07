"""The causal-LM losses: next-token cross-entropy and logit distillation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compress.llm.losses import causal_lm_loss, lm_distillation_loss
from compress.llm.models import load_lm


def _batch(tokenizer) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    enc = tokenizer(["the movie was good", "a boring film"], padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_next_token_loss_is_the_models_own_and_ignores_padding(tiny_llama: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    batch = _batch(tokenizer)
    idx = np.arange(2)
    loss = causal_lm_loss(model, batch, idx)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = model(**batch, labels=labels).loss
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_distilling_from_itself_costs_nothing_and_from_another_model_does(tiny_llama: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    batch = _batch(tokenizer)
    idx = np.arange(2)
    assert float(lm_distillation_loss(model, 2.0, 1.0)(model, batch, idx)) == pytest.approx(
        0, abs=1e-6
    )
    other, _ = load_lm(str(tiny_llama))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    kd = float(lm_distillation_loss(model, 2.0, 1.0)(other, batch, idx))
    mixed = float(lm_distillation_loss(model, 2.0, 0.5)(other, batch, idx))
    ce = float(causal_lm_loss(other, batch, idx))
    assert kd > 0 and mixed == pytest.approx(0.5 * kd + 0.5 * ce, rel=1e-5)
