"""Texts whose labels are optional: corpora for causal language models, sentences to embed.

A corpus is a list of texts, split like classification data (fixed seed) into
train (what training passes read), validation (model selection) and test
(perplexity and the task score in the report). Labels are optional: where
each text has one (the offline Rotten Tomatoes snippets, a file with a label
column), the report also scores the model zero-shot as a classifier, by the
log-likelihood of each label's word after a prompt (`data.prompt`,
`data.label_words`). Sources: `rotten-tomatoes`, a `.txt` file (one text per
non-empty line), `.csv/.tsv/.jsonl/.json/.parquet` (a text column, an
optional label column), or a hub dataset id. Unprompted (`prompted=False`,
sentences to embed), labelled data splits exactly as the classification reader
splits it, so both see the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.data import Dataset
from compress.data.spec import DataSpec
from compress.errors import DataError

ROTTEN_TOMATOES_PROMPT = "Review: {text}\nSentiment:"
ROTTEN_TOMATOES_WORDS = ["negative", "positive"]  # rotten, fresh
DEFAULT_PROMPT = "{text}\nLabel:"


def load_corpus(spec: DataSpec, base_dir: Path | None = None, prompted: bool = True) -> Dataset:
    """The texts named by `spec`, split, with labels where the source has them.

    `prompted`: note the zero-shot prompt and label words a language model is scored by.
    """
    from compress.data.tables import (
        encode_labels,
        hub_rows,
        local_path,
        read_records,
        split_rows,
    )

    if spec.source == "rotten-tomatoes":
        from compress.data.rotten_tomatoes import load_rows

        texts, label_ids, names = load_rows()
        data = split_rows(spec, texts, np.asarray(label_ids, dtype=np.int64), names)
        if not prompted:
            return data
        return _with_prompt(data, spec, ROTTEN_TOMATOES_PROMPT, ROTTEN_TOMATOES_WORDS)
    path = local_path(spec.source, base_dir)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError(f"{path}: data file not found")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        texts = [line.strip() for line in lines if line.strip()]
        return _unlabelled(spec, texts, str(path))
    local = path.exists() or bool(path.suffix)  # else a hub dataset id
    records = read_records(path) if local else hub_rows(spec)[0]
    where = str(path) if path.exists() else spec.source
    texts, raw = _texts(records, spec, where)
    if raw is None:
        return _unlabelled(spec, texts, where)
    labels, names = encode_labels(raw, spec.labels, where)
    data = split_rows(spec, texts, labels, names)
    if not prompted:
        return data
    return _with_prompt(data, spec, DEFAULT_PROMPT, names)


def _texts(
    records: list[dict[str, Any]], spec: DataSpec, where: str
) -> tuple[list[str], list[Any] | None]:
    """The text column, and the label column when every row has one (else None)."""
    if not records:
        raise DataError(f"{where}: the dataset is empty")
    texts: list[str] = []
    for number, row in enumerate(records, 1):
        text = row.get(spec.text_column) if isinstance(row, dict) else None
        if not isinstance(text, str):
            columns = ", ".join(map(str, row)) if isinstance(row, dict) else "not a record"
            raise DataError(
                f"{where}: row {number} has no text column '{spec.text_column}' "
                f"(columns: {columns}); set data.text_column"
            )
        texts.append(text)
    labels = [row.get(spec.label_column) for row in records]
    if any(label is None or label == "" for label in labels):
        if "label_column" in spec.model_fields_set:
            raise DataError(f"{where}: not every row has a label in '{spec.label_column}'")
        return texts, None
    return texts, labels


def _unlabelled(spec: DataSpec, texts: list[str], where: str) -> Dataset:
    from compress.data.tables import split_rows

    if not texts:
        raise DataError(f"{where}: no texts")
    if spec.labels is not None or spec.label_words is not None:
        raise DataError(f"{where}: the texts have no labels; remove data.labels/label_words")
    return split_rows(spec, texts, np.full(len(texts), -1, dtype=np.int64), [])


def _with_prompt(data: Dataset, spec: DataSpec, prompt: str, words: list[str]) -> Dataset:
    """Note how the task score asks the model: the prompt and one word per label."""
    words = spec.label_words or words
    if len(words) != len(data.label_names):
        raise DataError(
            f"data.label_words has {len(words)} words for {len(data.label_names)} labels "
            f"({', '.join(data.label_names)})"
        )
    from compress.artifacts import hash_json

    data.notes["prompt"] = spec.prompt or prompt
    data.notes["label_words"] = list(words)
    data.key = hash_json([data.key, data.notes["prompt"], words])  # prompted training reads them
    return data
