"""Labelled rows from files, and the fixed-seed split every task's data goes through.

Shared by the classification loaders (`compress.data.loaders`) and the text
corpora of language models (`compress.data.corpus`).
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


def local_path(source: str, base_dir: Path | None) -> Path:
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    return path


def _fingerprint(inputs: Sequence[Any]) -> Any:
    fingerprint = getattr(inputs, "fingerprint", None)
    return fingerprint() if fingerprint is not None else list(inputs)


def split_rows(
    spec: DataSpec, inputs: Sequence[Any], labels: np.ndarray, names: list[str]
) -> Dataset:
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
    return dataset_of(spec, {k: whole.take(idx) for k, idx in parts.items()}, names)


def dataset_of(spec: DataSpec, splits: dict[str, Split], names: list[str]) -> Dataset:
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


def hub_rows(spec: DataSpec) -> tuple[list[dict[str, Any]], Any]:
    """Every row of every split of a hub dataset, and its first split's features (needs
    `datasets` and a reachable hub)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"'{spec.source}' is neither an offline dataset (rotten-tomatoes) nor an existing "
            "file; to use a Hugging Face dataset id install `datasets` (pip install datasets)"
        ) from None
    # its download and split bars are not ours to show (a run's are given by `progress`)
    bars = datasets.utils.logging
    shown = getattr(bars, "is_progress_bar_enabled", lambda: False)()
    if shown:
        bars.disable_progress_bar()
    try:
        loaded = datasets.load_dataset(spec.source)
    except Exception as exc:  # the hub client raises many types
        raise DataError(f"could not load dataset '{spec.source}': {exc}") from None
    finally:
        if shown:
            bars.enable_progress_bar()
    rows: list[dict[str, Any]] = []
    for split_name in loaded:
        rows.extend(loaded[split_name])
    return rows, loaded[next(iter(loaded))].features
