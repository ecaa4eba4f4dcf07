"""Load a classification dataset: offline defaults, local files or folders, or the hub.

Text: `rotten-tomatoes`, CSV/TSV/JSONL/JSON/Parquet files, hub ids. Images:
`mnist`, `photos`, image folders (one sub-folder per class) and `.npz` files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compress.artifacts import hash_json
from compress.data import Dataset, Split
from compress.data.spec import DataSpec
from compress.errors import DataError, MissingDependencyError

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def load_dataset(
    spec: DataSpec, base_dir: Path | None = None, task: str = "text-classification"
) -> Dataset:
    """Read the data named by `spec` and split it (fixed seed) into train/validation/test."""
    if task == "image-classification":
        return _load_images(spec, base_dir)
    if spec.source == "rotten-tomatoes":
        from compress.data.rotten_tomatoes import load_rows

        texts, label_ids, names = load_rows()
        if spec.labels is not None and spec.labels != names:
            raise DataError(f"rotten-tomatoes has labels {names}; remove 'labels' from data")
        return _split(spec, texts, np.asarray(label_ids, dtype=np.int64), names)
    path = _local(spec.source, base_dir)
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        records = read_records(path)
        texts, raw_labels = _columns(records, spec, str(path))
        labels, names = encode_labels(raw_labels, spec.labels, str(path))
        return _split(spec, texts, labels, names)
    return _load_hub(spec)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV/JSONL/JSON/Parquet file as dicts."""
    if not path.is_file():
        raise DataError(f"{path}: " + ("not a file" if path.exists() else "data file not found"))
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".jsonl":
            rows = []
            with path.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except ValueError as exc:
                            raise DataError(f"{path}:{number}: not valid JSON ({exc})") from None
            return rows
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, list):
                raise DataError(f"{path}: expected a JSON list of records")
            return data
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise MissingDependencyError(
                    "pyarrow", "reading Parquet data", "pip install pyarrow"
                ) from None
            return list(pq.read_table(path).to_pylist())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (ValueError, csv.Error) as exc:
        raise DataError(f"{path}: could not parse ({exc})") from None
    raise DataError(f"{path}: unsupported data file type; use one of {', '.join(FILE_SUFFIXES)}")


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


def encode_labels(
    raw: list[Any], names: list[str] | None, where: str
) -> tuple[np.ndarray, list[str]]:
    """Map raw labels (names or integer ids) to ids; returns (ids, label names)."""
    if names is not None and len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{where}: data.labels names {repeated} more than once")
    if names is None:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            top = max(raw)
            if min(raw) < 0:
                raise DataError(f"{where}: negative label id {min(raw)}")
            names = [str(i) for i in range(top + 1)]
        else:
            names = sorted({str(v) for v in raw})
    index = {name: i for i, name in enumerate(names)}
    ids = np.empty(len(raw), dtype=np.int64)
    for row, value in enumerate(raw):
        is_id = isinstance(value, int) and not isinstance(value, bool)
        if is_id and str(value) not in index and 0 <= value < len(names):
            ids[row] = value
            continue
        key = str(value)
        if key not in index:
            raise DataError(
                f"{where}: row {row + 1} has label {value!r}, not in the label set {names}"
            )
        ids[row] = index[key]
    if len(set(ids.tolist())) < 2:
        raise DataError(f"{where}: needs at least two classes (found {sorted(set(map(str, raw)))})")
    return ids, names


def _load_images(spec: DataSpec, base_dir: Path | None) -> Dataset:
    from compress.data import images as datasets

    if spec.source == "mnist":
        images, ids, names = datasets.mnist()
        if spec.labels is not None and spec.labels != names:
            raise DataError(f"mnist has labels {names}; remove 'labels' from data")
        return _split(spec, images, ids, names)
    if spec.source == "photos":
        return _photos(spec)
    if spec.source == "fashion-mnist":
        return _fashion_mnist(spec)
    path = _local(spec.source, base_dir)
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
    return _split(spec, images, labels, names)


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
    return _dataset(spec, splits, LABELS)


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


def _local(source: str, base_dir: Path | None) -> Path:
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    return path


def _fingerprint(inputs: Sequence[Any]) -> Any:
    fingerprint = getattr(inputs, "fingerprint", None)
    return fingerprint() if fingerprint is not None else list(inputs)


def _split(spec: DataSpec, inputs: Sequence[Any], labels: np.ndarray, names: list[str]) -> Dataset:
    n = len(inputs)
    n_test, n_val = spec.test_size, spec.validation_size
    if n_test + n_val >= n:
        raise DataError(
            f"{spec.source}: {n} examples cannot hold test_size={n_test} + "
            f"validation_size={n_val} and still leave training data"
        )
    perm = np.random.default_rng(spec.split_seed).permutation(n)
    parts = {
        "test": perm[:n_test],
        "validation": perm[n_test : n_test + n_val],
        "train": perm[n_test + n_val :],
    }
    if spec.train_samples is not None:
        parts["train"] = parts["train"][: spec.train_samples]
    whole = Split(inputs, labels)
    return _dataset(spec, {k: whole.take(idx) for k, idx in parts.items()}, names)


def _dataset(spec: DataSpec, splits: dict[str, Split], names: list[str]) -> Dataset:
    """The dataset of `splits`, keyed by what its rows hold (for the step cache)."""
    key = hash_json(
        {k: [_fingerprint(s.inputs), s.labels.tolist()] for k, s in splits.items()}
        | {"labels": names}
    )
    return Dataset(
        label_names=names,
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        source=spec.source,
        key=key,
    )


def _load_hub(spec: DataSpec) -> Dataset:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"'{spec.source}' is neither an offline dataset (rotten-tomatoes) nor an existing "
            "file; to use a Hugging Face dataset id install `datasets` (pip install datasets)"
        ) from None
    try:
        loaded = datasets.load_dataset(spec.source)
    except Exception as exc:  # the hub client raises many types
        raise DataError(f"could not load dataset '{spec.source}': {exc}") from None
    rows: list[dict[str, Any]] = []
    for split_name in loaded:
        rows.extend(loaded[split_name])
    feature = loaded[next(iter(loaded))].features.get(spec.label_column)
    names = spec.labels or getattr(feature, "names", None)
    texts, raw = _columns(rows, spec, spec.source)
    labels, names = encode_labels(raw, names, spec.source)
    return _split(spec, texts, labels, names)
