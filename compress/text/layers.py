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
    """A copy of `model` holding only the transformer layers in `keep`.

    `config.pruned_heads` follows the kept layers to their new indices, so a
    pruned model keeps reloading after its depth is cut.
    """
    import copy

    import torch

    from compress.text.adapters import adapter_of, get, put

    adapter = adapter_of(model, "picking layers (distill.layers, prune.layers)")
    kept = copy.deepcopy(model)
    layer_list = get(kept.base_model, adapter.layers)
    if not isinstance(layer_list, torch.nn.ModuleList):
        raise UserError(
            f"cannot pick layers of {type(model).__name__}; give distill a `student:` instead"
        )
    put(kept.base_model, adapter.layers, torch.nn.ModuleList(layer_list[i] for i in keep))
    kept.config.num_hidden_layers = len(keep)
    pruned = {int(k): v for k, v in (getattr(kept.config, "pruned_heads", None) or {}).items()}
    if pruned:
        moved = {new: sorted(pruned[old]) for new, old in enumerate(keep) if old in pruned}
        kept.config.pruned_heads = moved
    return kept
