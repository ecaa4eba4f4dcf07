"""`compress bench model` on an image model folder: the default photos (unlabelled) and MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from compress.benchmark.model_bench import ModelBenchSpec, bench_model
from compress.data import Dataset
from compress.vision.folder import load


def test_photos_give_latency_and_no_accuracy(cnn_dir: Path) -> None:
    """Without --data, and with the unlabelled photos, an image model gets latency only."""
    result = bench_model(
        ModelBenchSpec(cnn_dir, batch_sizes=[1, 4], warmup=1, repetitions=3), progress=False
    )
    (entry,) = result["runtimes"]
    assert [row["batch_size"] for row in entry["latency"]] == [1, 4]
    assert "accuracy" not in entry and result["method"]["labels"] == "not scored: latency only"
    spec = ModelBenchSpec(cnn_dir, batch_sizes=[1], warmup=0, repetitions=1, data="photos")
    assert "no labels" in bench_model(spec, progress=False)["method"]["labels"]
    assert result["method"]["example_shape"].startswith("1x28x28")


def test_integer_labels_of_an_npz_are_scored(
    cnn_dir: Path, mnist_slice: Dataset, tmp_path: Path
) -> None:
    """An .npz of digits with integer labels is scored as the model's label ids: the accuracy
    is the one computed here from the model's own outputs (argmax against the labels)."""
    digits = tmp_path / "digits.npz"
    images = np.stack([np.asarray(mnist_slice.test.inputs[i]) for i in range(40)])
    np.savez(digits, images=images, labels=mnist_slice.test.labels[:40])
    spec = ModelBenchSpec(cnn_dir, batch_sizes=[2], warmup=0, repetitions=2, data=str(digits))
    result = bench_model(spec, progress=False)
    (entry,) = result["runtimes"]
    assert result["method"]["labels"] == "the data's label names are the model's"
    model, processor = load(cnn_dir)
    with torch.inference_mode():
        logits = model.eval()(torch.from_numpy(processor(list(images))))
    right = logits.argmax(-1).numpy() == mnist_slice.test.labels[:40]
    assert entry["n_eval"] == 40 and entry["accuracy"] == float(np.mean(right))
