"""Tiny transformers image classifiers built from configs, saved as normal folders.

28x28 grayscale inputs (like Fashion-MNIST), random weights: for tests of
shapes, reloading and exactness, which hold for any weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HF_IMAGE_ARCHITECTURES = ("vit", "resnet", "mobilenet_v2", "convnext")


def build_hf_image(arch: str, folder: Path, labels: list[str]) -> Path:
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
