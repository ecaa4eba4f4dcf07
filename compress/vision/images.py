"""The preprocessing an image model folder records.

`ImageProcessor` turns images (uint8 arrays, see `compress.data.images`) into
the float tensors a model takes; it is saved beside the weights as
`preprocessor_config.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import DataError, ModelLoadError

PROCESSOR_FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class ImageProcessor:
    """Resize to `size` x `size`, convert to `channels`, scale to [0, 1], normalize.

    `mean`/`std` are per channel in [0, 1] units: the model sees
    `(pixel / 255 - mean) / std` as `pixel_values` of shape [batch, C, size, size].
    """

    size: int
    channels: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or len(self.mean) != self.channels:
            raise ModelLoadError(f"bad preprocessing: {self}")
        if len(self.std) != self.channels or min(self.std) <= 0:
            raise ModelLoadError(f"bad preprocessing: {self}")

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """A float32 batch [N, C, size, size] from uint8 images."""
        out = np.empty((len(images), self.channels, self.size, self.size), dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        for i, image in enumerate(images):
            pixels = self._resized(np.asarray(image)).astype(np.float32) / 255.0
            out[i] = (pixels - mean) / std
        return out

    def _resized(self, image: np.ndarray) -> np.ndarray:
        """CxHxW uint8 at the model's size and channel count."""
        from PIL import Image

        if image.dtype != np.uint8:
            raise DataError(f"images must be uint8 pixels (got {image.dtype})")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.shape[:2] == (self.size, self.size):  # already the model's size: no resampling
            if self.channels == 1 and image.ndim == 2:
                return image[None]
            if self.channels == 3 and image.ndim == 3 and image.shape[2] == 3:
                return image.transpose(2, 0, 1)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise DataError(f"an image must be HxW or HxWx3 (got shape {image.shape})")
        pil = Image.fromarray(image[:, :, :3] if image.ndim == 3 else image)
        pil = pil.convert("L" if self.channels == 1 else "RGB")
        if pil.size != (self.size, self.size):
            pil = pil.resize((self.size, self.size), Image.Resampling.BILINEAR)
        array = np.asarray(pil, dtype=np.uint8)
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def save(self, folder: Path) -> None:
        (folder / PROCESSOR_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, channels: int | None = None) -> ImageProcessor:
        """The folder's preprocessing, in compress's form or transformers' (whose channel
        count is `channels`, the model's, when given)."""
        path = folder / PROCESSOR_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if "image_mean" in data or isinstance(data.get("size"), dict):  # transformers' form
                if channels is None:
                    channels = int(data.get("channels", len(data.get("image_mean") or [0] * 3)))
                return processor_from_hf(data, channels)
            return cls(
                size=int(data["size"]),
                channels=int(data.get("channels", 3)),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
            )
        except FileNotFoundError:
            raise ModelLoadError(f"{folder}: no {PROCESSOR_FILE} (image preprocessing)") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path}: not a valid image preprocessing file ({exc})") from None


def processor_from_hf(data: dict[str, Any], channels: int) -> ImageProcessor:
    """compress's preprocessing from a transformers `preprocessor_config.json`."""
    size: Any = data.get("crop_size") if data.get("do_center_crop") else None
    size = size or data.get("size")
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or size.get("width")
    if not isinstance(size, int | float):
        raise ModelLoadError(f"{PROCESSOR_FILE}: no image size (size / crop_size)")
    normalize = data.get("do_normalize", True)
    mean = list(data.get("image_mean") or [0.5] * channels) if normalize else [0.0] * channels
    std = list(data.get("image_std") or [0.5] * channels) if normalize else [1.0] * channels
    if len(mean) != channels:  # e.g. RGB statistics on a grayscale model: average them
        mean, std = [sum(mean) / len(mean)] * channels, [sum(std) / len(std)] * channels
    return ImageProcessor(size=int(size), channels=channels, mean=tuple(mean), std=tuple(std))
