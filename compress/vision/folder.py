"""Image model folders: `config.json` + `model.safetensors` + `preprocessor_config.json`.

`config.json` names the architecture and the labels. A pruned model keeps
its architecture's name: loading builds the architecture, then gives every
convolution, batch norm and linear layer the width of its saved tensors
(a depthwise convolution stays depthwise), so channel-pruned models reload
without pickles or code of their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import ModelLoadError
from compress.vision.architectures import (
    PREPROCESSING,
    ImageClassifier,
    build,
    efficientnet_lite0_imagenet,
)
from compress.vision.images import ImageProcessor

FORMAT = "compress-image-classifier"
WEIGHTS = "model.safetensors"
OFFLINE_IMAGE_MODELS = ("mnist-cnn", "efficientnet-lite0")


def is_image_folder(folder: Path) -> bool:
    """True when `folder/config.json` describes a compress image classifier."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def offline_model(
    name: str, label_names: list[str] | None
) -> tuple[ImageClassifier, ImageProcessor]:
    """An offline default: ImageNet EfficientNet-Lite0, or a new (untrained) `mnist-cnn`."""
    if name == "efficientnet-lite0":
        model = efficientnet_lite0_imagenet()
        if label_names is not None and len(label_names) != 1000:
            replace_head(model, label_names)
        elif label_names is not None:
            model.label_names = list(label_names)
    else:
        model = build(name, len(label_names) if label_names else 10)
        model.label_names = list(label_names or model.label_names)
    return model, PREPROCESSING[name]


def load(
    folder: Path, label_names: list[str] | None = None
) -> tuple[ImageClassifier, ImageProcessor]:
    """Rebuild the saved model at its saved widths; a new head when `label_names` differ."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from compress.artifacts.guard import check_finite, refuse_pickle_only

    config = _read_config(folder)
    weights = folder / WEIGHTS
    refuse_pickle_only(folder)
    if not weights.is_file():
        raise ModelLoadError(f"{folder}: no {WEIGHTS} (only safetensors weights are loaded)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{weights}: not a readable safetensors file ({exc})") from None
    saved_names = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    model = build(config["architecture"], len(saved_names))
    conform(model, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(
            f"{weights} does not fit '{config['architecture']}': {first}"
        ) from None
    check_finite(model, str(folder))
    processor = ImageProcessor.load(folder)
    _check_forward(model, processor, weights)
    model.label_names = saved_names
    if label_names is not None and label_names != saved_names:
        replace_head(model, label_names)
    return model.eval(), processor


def _check_forward(model: ImageClassifier, processor: ImageProcessor, weights: Path) -> None:
    """Widths read from tensors must chain: one forward pass on a blank image proves it."""
    x = torch.zeros(1, processor.channels, processor.size, processor.size)
    try:
        with torch.inference_mode():
            model.eval()(x)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(
            f"{weights} does not fit '{model.architecture}' at {processor.size}px: {first}"
        ) from None


def save(model: ImageClassifier, processor: ImageProcessor, folder: Path) -> None:
    """Write the model folder (safetensors weights, config with labels, preprocessing)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})
    labels = model.label_names or [str(i) for i in range(model.classifier().out_features)]
    config = {
        "format": FORMAT,
        "architecture": model.architecture,
        "num_labels": len(labels),
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    processor.save(folder)


def architecture_of(folder: Path) -> str:
    name: str = _read_config(folder)["architecture"]
    return name


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


def replace_head(model: ImageClassifier, label_names: list[str]) -> None:
    """A freshly initialised classification layer for `label_names`."""
    old = model.classifier()
    setattr(model.net, model.head, nn.Linear(old.in_features, len(label_names)))
    model.label_names = list(label_names)


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{folder}: not a model folder (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelLoadError(f"{folder}: config.json does not describe an image classifier")
    for key in ("architecture", "id2label"):
        if key not in data:
            raise ModelLoadError(f"{path}: missing '{key}'")
    return data
