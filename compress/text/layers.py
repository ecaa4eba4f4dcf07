"""Keeping a subset of an encoder's transformer layers (distillation students, depth pruning)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def pick_layers(depth: int, layers: int | list[int], option: str = "layers") -> list[int]:
    """Layer indices to keep; an int picks evenly from the bottom layer up.

    >>> pick_layers(6, 3)
    [0, 2, 4]
    """
    if isinstance(layers, list):
        if max(layers) >= depth:
            raise UserError(f"{option} {layers}: the model has only {depth} layers")
        return sorted(layers)
    if layers > depth:
        raise UserError(f"{option}={layers}: the model has only {depth} layers")
    step = depth / layers
    return [int(step * i) for i in range(layers)]


def keep_layers(model: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """A copy of `model` holding only the encoder layers in `keep` (BERT-like models)."""
    import copy

    import torch

    kept = copy.deepcopy(model)
    base = getattr(kept, kept.base_model_prefix, None)
    encoder = getattr(base, "encoder", None)
    layer_list = getattr(encoder, "layer", None)
    if not isinstance(layer_list, torch.nn.ModuleList):
        raise UserError(
            f"cannot pick layers of {type(model).__name__}; give distill a `student:` instead"
        )
    encoder.layer = torch.nn.ModuleList(layer_list[i] for i in keep)  # type: ignore[union-attr]
    kept.config.num_hidden_layers = len(keep)
    return kept
