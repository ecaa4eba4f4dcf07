"""Training losses of causal LMs: next-token cross-entropy, and logit distillation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def _shifted_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Which next-token targets are real tokens (not padding): [batch, length - 1]."""
    return batch["attention_mask"][:, 1:].bool()


def next_token_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of each real token given the ones before it."""
    import torch.nn.functional as F

    keep = _shifted_mask(batch)
    targets = batch["input_ids"][:, 1:][keep]
    loss: torch.Tensor = F.cross_entropy(logits[:, :-1][keep].float(), targets)
    return loss


def causal_lm_loss(model: Any, batch: dict[str, torch.Tensor], _: np.ndarray) -> torch.Tensor:
    """The LM's own objective on a right-padded batch (the batch's class labels are unused)."""
    return next_token_loss(model(**_inputs(batch)).logits, batch)


def lm_distillation_loss(teacher: Any, temperature: float, alpha: float) -> Any:
    """`alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE` per real token; the
    teacher (frozen) runs on every batch: an LM's logits over a corpus are too large to keep."""
    import torch
    import torch.nn.functional as F

    def loss_fn(model: Any, batch: dict[str, torch.Tensor], _: np.ndarray) -> torch.Tensor:
        inputs = _inputs(batch)
        logits = model(**inputs).logits
        if next(teacher.parameters()).device != logits.device:  # the student's device (GPU)
            teacher.to(logits.device)
        with torch.no_grad():
            target = teacher(**inputs).logits
        keep = batch["attention_mask"].bool()
        t = temperature
        kl = F.kl_div(
            F.log_softmax(logits[keep].float() / t, -1),
            F.log_softmax(target[keep].float() / t, -1),
            reduction="batchmean",
            log_target=True,
        )
        soft = kl * (t * t)
        if alpha >= 1:
            return soft
        total: torch.Tensor = alpha * soft + (1 - alpha) * next_token_loss(logits, batch)
        return total

    return loss_fn
