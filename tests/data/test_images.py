"""Image data sources: offline MNIST and photos, image folders and .npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compress.data.loaders import load_dataset
from compress.data.spec import DataSpec
from compress.errors import DataError

IMAGES = "image-classification"


def test_mnist_is_real_shuffled_and_split() -> None:
    data = load_dataset(
        DataSpec(source="mnist", test_size=500, validation_size=200), reader="images"
    )
    assert (len(data.train), len(data.validation), len(data.test)) == (4300, 200, 500)
    assert data.label_names == [str(i) for i in range(10)]
    assert len(set(data.test.labels.tolist())) == 10  # the sorted source was shuffled
    image = data.test.inputs[0]
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() > 200


def test_photos_are_split_by_photo_and_unlabelled() -> None:
    pytest.importorskip("skimage")
    data = load_dataset(DataSpec(source="photos"), reader="images")
    assert not data.labelled and (data.test.labels == -1).all()
    photos = data.notes["photos"]
    assert isinstance(photos, dict)
    assert not set(photos["test"]) & set(photos["train"])
    assert not set(photos["validation"]) & set(photos["train"])
    assert len(data.test) == 10 * len(photos["test"]) and len(data.train) > len(data.test)


def test_image_folder_labels_come_from_sub_folders(tmp_path: Path) -> None:
    """Each image gets its own sub-folder's label: cats are dark, dogs bright, in every split."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, (low, high) in (("cat", (0, 100)), ("dog", (156, 256))):
        (tmp_path / label).mkdir()
        for i in range(6):
            pixels = rng.integers(low, high, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    spec = DataSpec(source=str(tmp_path), test_size=2, validation_size=2)
    data = load_dataset(spec, reader="images")
    assert data.label_names == ["cat", "dog"] and len(data.train) == 8
    assert data.train.inputs[0].shape == (10, 12, 3)
    seen = []
    for split in (data.train, data.validation, data.test):
        for i, label in enumerate(split.labels.tolist()):
            seen.append(data.label_names[label])
            assert seen[-1] == ("cat" if split.inputs[i].mean() < 128 else "dog")
    assert sorted(seen) == ["cat"] * 6 + ["dog"] * 6


def test_npz_arrays_and_their_errors(tmp_path: Path) -> None:
    """.npz images keep their own labels across the split; float, label-less, empty fail."""
    x = np.arange(20, dtype=np.uint8)[:, None, None] * np.ones((1, 8, 8), dtype=np.uint8)
    y = np.array([0, 1] * 10)
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    spec = DataSpec(source=str(tmp_path / "ok.npz"), test_size=4, validation_size=4)
    data = load_dataset(spec, reader="images")
    assert len(data.train) == 12 and data.label_names == ["0", "1"]
    rows = []  # image i (all pixels i) keeps label i % 2, and each image is in one split
    for split in (data.train, data.validation, data.test):
        for i, label in enumerate(split.labels.tolist()):
            rows.append(int(split.inputs[i][0, 0]))
            assert label == rows[-1] % 2 and split.inputs[i].shape == (8, 8)
    assert sorted(rows) == list(range(20))
    np.savez(tmp_path / "float.npz", images=x.astype(np.float32), labels=y)
    with pytest.raises(DataError, match="uint8"):
        load_dataset(
            spec.model_copy(update={"source": str(tmp_path / "float.npz")}),
            reader="images",
        )
    np.savez(tmp_path / "nolabels.npz", images=x)
    with pytest.raises(DataError, match="no label array"):
        load_dataset(
            spec.model_copy(update={"source": str(tmp_path / "nolabels.npz")}),
            reader="images",
        )
    with pytest.raises(DataError, match="no images found"):
        load_dataset(spec.model_copy(update={"source": str(tmp_path)}), reader="images")
