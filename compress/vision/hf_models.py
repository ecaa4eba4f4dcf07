"""Hugging Face image classifiers (ViT, ResNet, MobileNetV2, ConvNeXt, ...) as image models.

Any `AutoModelForImageClassification` folder (config.json, model.safetensors,
preprocessor_config.json) or hub id loads, safetensors only and never remote
code, wrapped as an `ImageClassifier` so the image passes treat it like
compress's own CNNs. Its `preprocessor_config.json` becomes the resize /
rescale / normalize the model was trained with (the crop size where the
processor centre-crops: images are resized straight to it).

Channel pruning changes widths that a Hugging Face config cannot describe,
so a folder saved after it is marked (`compress_widths_from_weights` in
config.json) and reloads the way compress's own CNNs do: the architecture is
built from the config and every convolution, batch norm and linear layer
takes the width of its saved tensor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import ModelLoadError
from compress.vision.architectures import ImageClassifier
from compress.vision.images import PROCESSOR_FILE, ImageProcessor

WEIGHTS = "model.safetensors"
CONFORMED = "compress_widths_from_weights"
PROCESSOR_TYPE = "ViTImageProcessor"  # resize to size x size, rescale, normalize: what we do


def is_hf_image_config(data: Any) -> bool:
    """Whether a parsed config.json describes a transformers image classifier."""
    if not isinstance(data, dict) or "model_type" not in data:
        return False
    return any(str(a).endswith("ForImageClassification") for a in data.get("architectures") or [])


class HFImageClassifier(ImageClassifier):
    """A transformers image classifier: `pixel_values` -> logits."""

    def __init__(self, model: Any) -> None:
        super().__init__(model, "classifier", str(model.config.model_type))
        id2label = model.config.id2label
        self.label_names = [str(id2label[i]) for i in range(len(id2label))]

    def classifier(self) -> nn.Linear:
        head = getattr(self.net, "classifier", None)
        layers = [m for m in head.modules() if isinstance(m, nn.Linear)] if head else []
        if not layers:
            raise ModelLoadError(f"{type(self.net).__name__}: no linear classification layer")
        return layers[-1]

    def replace_classifier(self, layer: nn.Linear) -> None:
        net: Any = self.net
        head = net.classifier
        if isinstance(head, nn.Linear):
            net.classifier = layer
            return
        names = [n for n, m in head.named_modules() if isinstance(m, nn.Linear)]
        parent = head.get_submodule(names[-1].rpartition(".")[0]) if "." in names[-1] else head
        setattr(parent, names[-1].rpartition(".")[2], layer)

    def set_labels(self, label_names: list[str]) -> None:
        self.label_names = list(label_names)
        config: Any = self.net.config
        config.id2label = dict(enumerate(label_names))
        config.label2id = {n: i for i, n in enumerate(label_names)}
        config.num_labels = len(label_names)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(pixel_values=pixel_values).logits
        return logits


def save_processor(processor: ImageProcessor, folder: Path) -> None:
    """One `preprocessor_config.json` that transformers and compress both read."""
    data = {
        "image_processor_type": PROCESSOR_TYPE,
        "do_resize": True,
        "size": {"height": processor.size, "width": processor.size},
        "resample": 2,  # bilinear, as compress resizes
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(processor.mean),
        "image_std": list(processor.std),
        "channels": processor.channels,
    }
    (folder / PROCESSOR_FILE).write_text(json.dumps(data, indent=2) + "\n")


def load_hf(
    folder: Path, data: dict[str, Any], label_names: list[str] | None
) -> tuple[HFImageClassifier, ImageProcessor]:
    """A transformers image classifier folder (`data`: its parsed config.json) as an
    `HFImageClassifier` and its preprocessing."""
    from transformers import AutoConfig, AutoModelForImageClassification

    from compress.artifacts.guard import check_finite, refuse_pickle_only

    refuse_pickle_only(folder)
    if data.get("auto_map"):
        raise ModelLoadError(f"{folder}: the model asks to run its own code; compress never does")
    if not (folder / WEIGHTS).is_file():
        raise ModelLoadError(f"{folder}: no {WEIGHTS} (only safetensors weights are loaded)")
    try:
        if data.get(CONFORMED):
            model = _load_conformed(folder, AutoConfig.from_pretrained(folder))
        else:
            model = AutoModelForImageClassification.from_pretrained(
                folder, use_safetensors=True, trust_remote_code=False
            )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"could not load image model {folder}: {first[:200]}") from None
    check_finite(model, str(folder))
    processor = ImageProcessor.load(folder, int(getattr(model.config, "num_channels", 3)))
    wrapped = HFImageClassifier(model.eval())
    if label_names is not None and label_names != wrapped.label_names:
        wrapped.reset_head(label_names)
    return wrapped, processor


def _load_conformed(folder: Path, config: Any) -> Any:
    from safetensors.torch import load_file
    from transformers import AutoModelForImageClassification

    from compress.vision.widths import conform

    model = AutoModelForImageClassification.from_config(config)
    state = load_file(str(folder / WEIGHTS))
    conform(model, state)
    model.load_state_dict(state, strict=True)
    return model


def hub_snapshot(repo: str) -> str:
    """A hub image classifier's folder (config, safetensors weights, preprocessing only)."""
    try:
        from huggingface_hub import snapshot_download

        return str(
            snapshot_download(repo, allow_patterns=["config.json", WEIGHTS, PROCESSOR_FILE, "*.md"])
        )
    except Exception as exc:  # offline, unknown repo, gated model: one line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"could not fetch image model '{repo}' from the hub: {first}"
        ) from None


def save_hf(model: HFImageClassifier, processor: ImageProcessor, folder: Path) -> None:
    """`save_pretrained` plus the preprocessing; marked when widths differ from the config."""
    from transformers import AutoModelForImageClassification

    folder.mkdir(parents=True, exist_ok=True)
    try:
        with torch.device("meta"):  # shapes only, no memory
            fresh = AutoModelForImageClassification.from_config(model.net.config)
    except (NotImplementedError, RuntimeError):  # e.g. prune_heads on the meta device
        fresh = AutoModelForImageClassification.from_config(model.net.config)
    shapes = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    conformed = any(tuple(v.shape) != shapes.get(k) for k, v in model.net.state_dict().items())
    net: Any = model.net
    setattr(net.config, CONFORMED, conformed)
    net.save_pretrained(folder, safe_serialization=True)
    save_processor(processor, folder)
