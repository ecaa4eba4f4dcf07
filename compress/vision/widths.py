"""Give a freshly built network the layer widths of saved (pruned) weights."""

from __future__ import annotations

import torch
from torch import nn


def conform(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize every conv / batch-norm / linear layer of `model` to the widths in `state`."""
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        weight = state.get(prefix + "weight")
        if weight is None:
            continue
        if isinstance(module, nn.Conv2d):
            depthwise = module.groups > 1 and module.groups == module.in_channels
            module.out_channels = int(weight.shape[0])
            if depthwise:
                module.groups = module.in_channels = int(weight.shape[0])
            else:
                module.in_channels = int(weight.shape[1]) * module.groups
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = int(weight.shape[0])
            for buffer in ("running_mean", "running_var"):
                if getattr(module, buffer) is not None:
                    setattr(module, buffer, torch.zeros_like(state[prefix + buffer]))
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = (int(s) for s in weight.shape)
        else:
            continue
        module.weight = nn.Parameter(torch.empty_like(weight))
        if getattr(module, "bias", None) is not None and prefix + "bias" in state:
            module.bias = nn.Parameter(torch.empty_like(state[prefix + "bias"]))
