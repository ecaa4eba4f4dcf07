"""Fashion-MNIST read from a Debian package file, the way the loader fetches it."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from pathlib import Path

import numpy as np
import pytest

from compress.data import fashion_mnist as fm
from compress.data.loaders import load_dataset
from compress.data.spec import DataSpec
from compress.errors import DataError


def _idx(array: np.ndarray) -> bytes:
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def write_deb(folder: Path, n_train: int = 60, n_test: int = 30) -> Path:
    """A .deb laid out like Debian's dataset-fashion-mnist, with random pixels."""
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx(np.arange(n_test) % 10),
    }
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./usr/share/datasets/fashion-mnist/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    deb = folder / "fashion-mnist" / f"{fm.PACKAGE}_0.0-1_all.deb"
    deb.parent.mkdir(parents=True)
    deb.write_bytes(
        _ar({"debian-binary": b"2.0\n", "data.tar.xz": lzma.compress(tar_bytes.getvalue())})
    )
    return deb


@pytest.fixture()
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(fm, "INSTALLED", tmp_path / "not-installed")
    monkeypatch.setenv("COMPRESS_CACHE", str(tmp_path))
    return write_deb(tmp_path)


def test_read_from_the_package_with_the_authors_split(packaged: Path) -> None:
    spec = DataSpec(source="fashion-mnist", validation_size=10, test_size=20)
    data = load_dataset(spec, None, "images")
    assert data.label_names == fm.LABELS
    assert (len(data.train.inputs), len(data.validation.inputs), len(data.test.inputs)) == (
        50,
        10,
        20,
    )
    parts = fm.fashion_mnist()
    test_images = {parts["test"][0][i].tobytes() for i in range(30)}
    assert all(image.tobytes() in test_images for image in data.test.inputs)
    assert not any(image.tobytes() in test_images for image in data.train.inputs)
    assert data.train.inputs[0].shape == (28, 28)
    assert not packaged.exists()  # extracted once, then the package file is dropped
    again = load_dataset(spec, None, "images")  # from the extracted files
    assert again.key == data.key


def test_too_large_a_split_and_a_missing_package_are_clear_errors(
    packaged: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match="test_size=40"):
        load_dataset(DataSpec(source="fashion-mnist", test_size=40), None, "images")
    monkeypatch.setenv("COMPRESS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(fm.shutil, "which", lambda _: None)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fm.fashion_mnist()
