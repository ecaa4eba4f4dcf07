from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compress.data.images import ImageList
from compress.errors import DataError, ModelLoadError
from compress.vision.images import ImageProcessor


def test_processor_resizes_converts_and_normalizes() -> None:
    proc = ImageProcessor(size=8, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    gray = np.full((20, 30), 255, dtype=np.uint8)
    color = np.zeros((8, 8, 3), dtype=np.uint8)
    batch = proc([gray, color])
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == np.float32
    assert np.allclose(batch[0], 1.0) and np.allclose(batch[1], -1.0)


def test_processor_to_one_channel_matches_luminance() -> None:
    proc = ImageProcessor(size=4, channels=1, mean=(0.0,), std=(1.0,))
    red = np.zeros((4, 4, 3), dtype=np.uint8)
    red[..., 0] = 255
    value = proc([red])[0, 0, 0, 0]
    assert value == pytest.approx(round(255 * 0.299) / 255, abs=1 / 255)


def test_processor_rejects_wrong_images() -> None:
    proc = ImageProcessor(size=4, channels=1, mean=(0.0,), std=(1.0,))
    with pytest.raises(DataError, match="uint8"):
        proc([np.zeros((4, 4), dtype=np.float32)])
    with pytest.raises(DataError, match="HxW"):
        proc([np.zeros((4, 4, 2), dtype=np.uint8)])
    with pytest.raises(ModelLoadError):
        ImageProcessor(size=4, channels=3, mean=(0.0,), std=(1.0,))


def test_processor_round_trips_through_its_file(tmp_path: Path) -> None:
    proc = ImageProcessor(size=28, channels=1, mean=(0.1307,), std=(0.3081,))
    proc.save(tmp_path)
    assert ImageProcessor.load(tmp_path) == proc
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not a valid"):
        ImageProcessor.load(tmp_path)


def test_image_list_reads_files_lazily_and_fingerprints(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    images = ImageList([tmp_path / "a.png", pixels, tmp_path / "b.png"])
    assert np.array_equal(images[0], pixels) and np.array_equal(images[1], pixels)
    assert len(images[:2]) == 2 and len(images.take([2, 0])) == 2
    with pytest.raises(DataError, match="not a readable image"):
        images[2]
    first = images[:2].fingerprint()
    assert first == ImageList([tmp_path / "a.png", pixels]).fingerprint()
    assert first != ImageList([pixels, pixels + 1]).fingerprint()
