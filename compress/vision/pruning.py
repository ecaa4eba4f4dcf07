"""Channel pruning of CNNs with torch-pruning, and their multiply-accumulate counts.

torch-pruning traces the model into a dependency graph, so layers that must
keep equal widths (a residual sum, a depthwise convolution and the layers
around it) are pruned together and the model stays consistent. The
classification layer keeps its outputs.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from compress.vision.architectures import ImageClassifier
from compress.vision.images import ImageProcessor

Importance = Literal["magnitude", "taylor", "bn_scale"]


def example_input(processor: ImageProcessor, batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, processor.channels, processor.size, processor.size)


def count_macs(model: nn.Module, processor: ImageProcessor) -> int:
    """Multiply-accumulates of convolutions and linear layers for one image.

    Counted with forward hooks on every `nn.Conv2d` / `nn.Linear` (subclasses
    included, e.g. EfficientNet's same-padding convolutions): a convolution
    costs output elements x (input channels / groups) x kernel area.
    """
    total = 0

    def conv(module: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def linear(module: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += out.numel() * module.in_features

    hooks = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        with torch.inference_mode():
            model.eval()(example_input(processor).to(device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total


def prune_channels(
    model: ImageClassifier,
    processor: ImageProcessor,
    ratio: float,
    importance: Importance,
    round_to: int,
    ignore: list[str],
    global_pruning: bool,
    calibration: list[dict[str, torch.Tensor]] | None = None,
) -> dict[str, Any]:
    """Remove `ratio` of the prunable channels in place; returns what changed.

    `taylor` scores need `calibration` batches (with `labels`) for gradients.
    `ignore` lists module-name regexes whose output channels are left alone.
    """
    import re

    import torch_pruning as tp

    device = next(model.parameters()).device
    model.eval()
    scorer: Any = {
        "magnitude": tp.importance.GroupMagnitudeImportance(p=2),
        "taylor": tp.importance.GroupTaylorImportance(),
        "bn_scale": tp.importance.BNScaleImportance(),
    }[importance]
    regexes = [re.compile(p) for p in ignore]
    ignored = [model.classifier()]
    ignored += [m for n, m in model.named_modules() if n and any(r.fullmatch(n) for r in regexes)]
    before = _widths(model)
    pruner = tp.pruner.BasePruner(
        model,
        example_input(processor).to(device),
        importance=scorer,
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        ignored_layers=ignored,
        round_to=round_to,
    )
    if importance == "taylor":
        if not calibration:
            raise ValueError("taylor importance needs calibration batches")
        model.zero_grad()
        for batch in calibration:
            logits = model(batch["pixel_values"].to(device))
            nn.functional.cross_entropy(logits, batch["labels"].to(device)).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    after = _widths(model)
    return {
        "pruned_layers": {n: [before[n], w] for n, w in after.items() if w != before[n]},
    }


def _widths(model: nn.Module) -> dict[str, int]:
    return {
        name: module.out_channels
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    }
