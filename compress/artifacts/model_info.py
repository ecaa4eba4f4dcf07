"""What a model folder says about itself in its JSON files, read without loading it.

The recipe validator uses this to refuse, before any training, a pass that
cannot handle the recipe's architecture or tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelInfo:
    """What the recipe validator can learn of a model from its folder's JSON files."""

    location: str
    model_type: str
    tokenizer: str | None  # the fast tokenizer's model type (WordPiece, BPE, Unigram, ...)


def read_model_info(location: str) -> ModelInfo | None:
    """`config.json`'s model type and `tokenizer.json`'s model kind (None: not readable).

    A location that is not a folder is a hub id, read only from the local cache.
    """
    folder = Path(location)
    files: dict[str, Path | None] = {
        "config": folder / "config.json",
        "tokenizer": folder / "tokenizer.json",
    }
    if not folder.is_dir():
        files = {k: _cached_hub_file(location, f"{k}.json") for k in files}
    config_file, tokenizer_file = files["config"], files["tokenizer"]
    if config_file is None or not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
        kind = None
        if tokenizer_file is not None and tokenizer_file.is_file():
            tokenizer = json.loads(tokenizer_file.read_text(encoding="utf-8"))
            kind = (tokenizer.get("model") or {}).get("type")
    except (OSError, ValueError):
        return None
    # transformers names it model_type; compress's own image model folders, architecture
    model_type = (
        (config.get("model_type") or config.get("architecture"))
        if isinstance(config, dict)
        else None
    )
    if not isinstance(model_type, str):
        return None
    return ModelInfo(location, model_type, kind if isinstance(kind, str) else None)


def label_names(config_json: Path) -> list[str] | None:
    """The label names in id order from a `config.json`'s `id2label` (None: unreadable)."""
    try:
        id2label = json.loads(config_json.read_text(encoding="utf-8"))["id2label"]
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cached_hub_file(repo: str, name: str) -> Path | None:
    """A hub model's file if it is already in the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo, name)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None
