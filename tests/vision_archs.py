"""Tiny transformers image classifiers built from configs, saved as normal folders.

28x28 grayscale inputs (like Fashion-MNIST), random weights: for tests of
shapes, reloading and exactness, which hold for any weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HF_IMAGE_ARCHITECTURES = ("vit", "resnet", "mobilenet_v2", "convnext")


def build_hf_image(arch: str, folder: Path, labels: list[str], random_norms: bool = False) -> Path:
    """Save a random `arch` classifier; `random_norms`: its batch norms get a random scale and
    shift and statistics measured on random images (see `randomize_norms`)."""
    import torch
    import transformers as tf

    common: dict[str, Any] = {
        "num_channels": 1,
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {n: i for i, n in enumerate(labels)},
    }
    config: Any
    if arch == "vit":
        config = tf.ViTConfig(
            image_size=28,
            patch_size=7,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            **common,
        )
    elif arch == "resnet":
        config = tf.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", **common
        )
    elif arch == "mobilenet_v2":
        config = tf.MobileNetV2Config(image_size=28, depth_multiplier=0.35, **common)
    elif arch == "convnext":
        config = tf.ConvNextConfig(
            num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], image_size=28, **common
        )
    else:
        raise ValueError(arch)
    torch.manual_seed(0)
    model = tf.AutoModelForImageClassification.from_config(config)
    if random_norms:
        randomize_norms(model)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor = {  # what transformers writes for these models: resize, rescale, normalize
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": 28, "width": 28},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.286],
        "image_std": [0.353],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def randomize_norms(model: Any, channels: int = 1, seed: int = 0) -> None:
    """Give every BatchNorm2d a random scale and shift per channel, then running statistics
    measured on random 28x28 images (`channels` deep), as training would leave them. A fresh
    one has 1, 0, 0, 1 in every channel, which makes its channels indistinguishable; and
    transformers' MobileNetV2 starts with convolutions so small that, under made-up statistics,
    its logits would not depend on the image at all."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.5)
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: one batch gives its own statistics
        model.train()(torch.randn(32, channels, 28, 28, generator=generator))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


def masked_channel_reference(original: Any, pruned: Any) -> Any:
    """A copy of `original` computing what a correct channel pruning into `pruned` computes.

    Every BatchNorm2d outputs zeros in the channels its namesake in `pruned` lost (found by
    matching each channel's scale, shift, mean and variance exactly). In these CNNs a batch
    norm's output reaches the next convolution or the classifier only through ReLU, a residual
    sum, pooling or a depthwise convolution followed by a batch norm that loses the same
    channels, all of which keep a zero channel zero: so a zeroed channel adds nothing, as a
    removed one does.
    """
    import torch

    from tests.archs import row_indices

    def stats(norm: Any) -> Any:
        return torch.stack([norm.weight, norm.bias, norm.running_mean, norm.running_var], 1)

    reference = copy.deepcopy(original).eval()
    smaller = dict(pruned.named_modules())
    for name, norm in reference.named_modules():
        if isinstance(norm, torch.nn.BatchNorm2d):
            kept = row_indices(stats(norm).detach(), stats(smaller[name]).detach())
            mask = torch.zeros(norm.num_features)
            mask[kept] = 1.0

            def hook(_: Any, __: Any, out: Any, mask: Any = mask) -> Any:
                return out * mask[None, :, None, None]

            norm.register_forward_hook(hook)
    return reference
