"""Load a classification dataset: offline defaults, local files or folders, or the hub.

Text: `rotten-tomatoes`, CSV/TSV/JSONL/JSON/Parquet files, hub ids. Images:
`mnist`, `photos`, image folders (one sub-folder per class) and `.npz` files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from compress.artifacts import hash_json
from compress.data import Dataset, Split
from compress.data.spec import DataSpec
from compress.data.tables import (
    FILE_SUFFIXES,
    dataset_of,
    encode_labels,
    hub_rows,
    local_path,
    read_records,
    split_rows,
)
from compress.errors import DataError

Reader = Literal["texts", "images", "corpus", "sentences"]


def load_dataset(spec: DataSpec, base_dir: Path | None = None, reader: Reader = "texts") -> Dataset:
    """Read the data named by `spec` and split it (fixed seed) into train/validation/test.

    `reader` is the task's (`Task.data_reader`): labelled texts, images, a corpus
    of texts whose labels are optional (with the zero-shot prompt a language model
    is scored by), or sentences whose labels are optional (no prompt).
    """
    if reader == "images":
        return _load_images(spec, base_dir)
    if reader in ("corpus", "sentences"):
        from compress.data.corpus import load_corpus

        return load_corpus(spec, base_dir, prompted=reader == "corpus")
    if spec.source == "rotten-tomatoes":
        from compress.data.rotten_tomatoes import load_rows

        texts, label_ids, names = load_rows()
        if spec.labels is not None and spec.labels != names:
            raise DataError(f"rotten-tomatoes has labels {names}; remove 'labels' from data")
        return split_rows(spec, texts, np.asarray(label_ids, dtype=np.int64), names)
    path = local_path(spec.source, base_dir)
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        records = read_records(path)
        texts, raw_labels = _columns(records, spec, str(path))
        labels, names = encode_labels(raw_labels, spec.labels, str(path))
        return split_rows(spec, texts, labels, names)
    return _load_hub(spec)


def _columns(
    records: list[dict[str, Any]], spec: DataSpec, where: str
) -> tuple[list[str], list[Any]]:
    if not records:
        raise DataError(f"{where}: the dataset is empty")
    texts: list[str] = []
    labels: list[Any] = []
    for number, row in enumerate(records, 1):
        if not isinstance(row, dict):
            raise DataError(f"{where}: row {number} is not a record")
        for column in (spec.text_column, spec.label_column):
            if column not in row:
                raise DataError(
                    f"{where}: row {number} has no column '{column}' "
                    f"(columns: {', '.join(map(str, row))}); set data.text_column/label_column"
                )
        text = row[spec.text_column]
        if not isinstance(text, str):
            raise DataError(f"{where}: row {number} column '{spec.text_column}' is not text")
        label = row[spec.label_column]
        if label is None or (isinstance(label, str) and not label.strip()):
            raise DataError(f"{where}: row {number} has no label in column '{spec.label_column}'")
        texts.append(text)
        labels.append(label)
    return texts, labels


def _load_images(spec: DataSpec, base_dir: Path | None) -> Dataset:
    from compress.data import images as datasets

    if spec.source == "mnist":
        images, ids, names = datasets.mnist()
        if spec.labels is not None and spec.labels != names:
            raise DataError(f"mnist has labels {names}; remove 'labels' from data")
        return split_rows(spec, images, ids, names)
    if spec.source == "photos":
        return _photos(spec)
    if spec.source == "fashion-mnist":
        return _fashion_mnist(spec)
    path = local_path(spec.source, base_dir)
    if path.is_dir():
        images, raw = datasets.image_folder(path)
    elif path.suffix.lower() == ".npz" or path.is_file():
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        label_key = spec.label_column if "label_column" in spec.model_fields_set else None
        images, raw = datasets.npz(path, spec.image_column, label_key)
    else:
        raise DataError(
            f"{spec.source}: not an offline image dataset "
            f"({', '.join(datasets.OFFLINE_IMAGE_DATASETS)}), an image folder or a .npz file"
        )
    labels, names = encode_labels(raw, spec.labels, str(path))
    return split_rows(spec, images, labels, names)


def _fashion_mnist(spec: DataSpec) -> Dataset:
    """Fashion-MNIST with its authors' split: test rows from their 10,000 test images,
    validation and training rows from their 60,000 training images."""
    from compress.data.fashion_mnist import LABELS, fashion_mnist
    from compress.data.images import ImageList

    if spec.labels is not None and spec.labels != LABELS:
        raise DataError(f"fashion-mnist has labels {LABELS}; remove 'labels' from data")
    parts = fashion_mnist()
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    if spec.test_size > len(x_test) or spec.validation_size >= len(x_train):
        raise DataError(
            f"fashion-mnist has {len(x_test)} test and {len(x_train)} training images: "
            f"test_size={spec.test_size} or validation_size={spec.validation_size} is too large"
        )
    rng = np.random.default_rng(spec.split_seed)
    test = rng.permutation(len(x_test))[: spec.test_size]
    rest = rng.permutation(len(x_train))
    val, train = rest[: spec.validation_size], rest[spec.validation_size :]
    if spec.train_samples is not None:
        train = train[: spec.train_samples]

    training, testing = (
        Split(ImageList(list(x_train)), y_train),
        Split(ImageList(list(x_test)), y_test),
    )
    splits = {
        "train": training.take(train),
        "validation": training.take(val),
        "test": testing.take(test),
    }
    return dataset_of(spec, splits, LABELS)


def _photos(spec: DataSpec) -> Dataset:
    """The offline photos, split by photo; labels come later from the input model."""
    from compress.data.images import ImageList, crops, photos

    shots = photos()
    order = np.random.default_rng(spec.split_seed).permutation(len(shots))
    n_test = max(1, len(shots) // 3)
    n_val = max(1, len(shots) // 7)
    rng = np.random.default_rng(spec.split_seed)
    parts: dict[str, list[np.ndarray]] = {"test": [], "validation": [], "train": []}
    names: dict[str, list[str]] = {"test": [], "validation": [], "train": []}
    for rank, i in enumerate(order):
        name, image = shots[i]
        split = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
        views = crops(image, 64, rng) if split == "train" else crops(image, 10, None)
        parts[split].extend(views)
        names[split].append(name)
    if spec.train_samples is not None:
        parts["train"] = parts["train"][: spec.train_samples]
    splits = {k: Split(ImageList(v), np.full(len(v), -1, dtype=np.int64)) for k, v in parts.items()}
    key = hash_json({k: s.inputs.fingerprint() for k, s in splits.items()})  # type: ignore[attr-defined]
    return Dataset(
        label_names=[],
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        source=spec.source,
        key=key,
        notes={"photos": names},
        labelled=False,
    )


def _load_hub(spec: DataSpec) -> Dataset:
    rows, features = hub_rows(spec)
    feature = features.get(spec.label_column)
    names = spec.labels or getattr(feature, "names", None)
    texts, raw = _columns(rows, spec, spec.source)
    labels, names = encode_labels(raw, names, spec.source)
    return split_rows(spec, texts, labels, names)
