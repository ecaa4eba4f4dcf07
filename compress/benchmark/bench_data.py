"""What `compress bench model` scores a model on: the examples, and labels in the model's order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.errors import UserError


def examples(source: str, reader: Any) -> Any:
    """Offline datasets: their usual test split; files and folders: every example as test."""
    from dataclasses import replace

    import numpy as np

    from compress.data import Split
    from compress.data.loaders import load_dataset
    from compress.data.spec import OFFLINE_DATASETS, DataSpec

    if source in OFFLINE_DATASETS:
        return load_dataset(DataSpec(source=source), reader=reader)
    data = load_dataset(DataSpec(source=source, test_size=1, validation_size=1), reader=reader)
    parts = (data.train, data.validation, data.test)
    inputs = parts[0].inputs + parts[1].inputs + parts[2].inputs  # type: ignore[operator]
    labels = np.concatenate([p.labels for p in parts])
    return replace(data, test=Split(inputs, labels))


def model_labels(folder: Path) -> list[str] | None:
    """The model's label names in id order, from the config.json beside or in it."""
    from compress.artifacts import label_names

    return label_names(folder / "config.json")


def align_labels(data: Any, names: list[str] | None) -> tuple[Any, str]:
    """`data` with label ids renumbered to the model's (matched by name), and how they matched.

    A file's labels get ids in their own order (sorted names, say), which need
    not be the model's: scoring ids against ids would be wrong. Integer labels
    (an .npz file) are taken as the model's ids when the names do not match.
    """
    from dataclasses import replace

    import numpy as np

    from compress.data import Split

    ours = list(data.label_names)
    if not data.labelled:
        return data, "the data has no labels of its own: latency only"
    if names is None:
        return data, "label ids as given (no config.json with id2label beside the model)"
    if ours == names:
        return data, "the data's label names are the model's"
    if all(name in names for name in ours):
        to_model = np.asarray([names.index(name) for name in ours], dtype=np.int64)
        splits = {
            which: Split(part.inputs, to_model[np.asarray(part.labels, dtype=np.int64)])
            for which in ("train", "validation", "test")
            for part in [data.split(which)]
        }
        return replace(data, label_names=names, **splits), "matched by name to the model's"
    if all(name.isdigit() and int(name) < len(names) for name in ours):
        return data, "integer labels taken as the model's label ids"
    missing = [name for name in ours if name not in names]
    raise UserError(
        f"the data's labels {missing[:10]} are not among the model's {names[:10]}"
        + (" ..." if len(names) > 10 else "")
    )
