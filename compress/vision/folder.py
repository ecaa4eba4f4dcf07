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

from compress.errors import ModelLoadError
from compress.vision.architectures import (
    PREPROCESSING,
    ImageClassifier,
    build,
    efficientnet_lite0_imagenet,
)
from compress.vision.images import ImageProcessor
from compress.vision.widths import conform

FORMAT = "compress-image-classifier"
WEIGHTS = "model.safetensors"
OFFLINE_IMAGE_MODELS = ("mnist-cnn", "efficientnet-lite0")


def is_image_folder(folder: Path) -> bool:
    """Whether `folder/config.json` is an image classifier (compress's or transformers')."""
    from compress.vision.hf_models import is_hf_image_config

    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (data.get("format") == FORMAT or is_hf_image_config(data))


def offline_model(
    name: str, label_names: list[str] | None
) -> tuple[ImageClassifier, ImageProcessor]:
    """An offline default: ImageNet EfficientNet-Lite0, or a new (untrained) `mnist-cnn`."""
    if name == "efficientnet-lite0":
        model = efficientnet_lite0_imagenet()
        if label_names is not None and len(label_names) != 1000:
            model.reset_head(label_names)
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
    from compress.vision.hf_models import is_hf_image_config, load_hf

    data = _read_json(folder)
    if is_hf_image_config(data):
        return load_hf(folder, data, label_names)
    config = _read_config(folder, data)
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
        model.reset_head(label_names)
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

    from compress.vision.hf_models import HFImageClassifier, save_hf

    if isinstance(model, HFImageClassifier):
        save_hf(model, processor, folder)
        return
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


def _read_json(folder: Path) -> Any:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{folder}: not a model folder (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from None


def _read_config(folder: Path, data: Any) -> dict[str, Any]:
    """`data` (the folder's parsed config.json) checked as a compress image model config."""
    path = folder / "config.json"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelLoadError(
            f"{folder}: config.json describes neither a compress image classifier nor a "
            "transformers *ForImageClassification model"
        )
    for key in ("architecture", "id2label"):
        if key not in data:
            raise ModelLoadError(f"{path}: missing '{key}'")
    return data
