"""Files of artifacts: content hashes, atomic JSON writes, and copying what a model needs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

MODEL_SUFFIXES = (".onnx", ".onnx_data", ".data", ".safetensors", ".bin", ".engine", ".plan")
# Files a run adds to a finished step folder (report caches, labels, temporaries):
# they are not part of the step's artifact.
SCRATCH_PREFIXES = (".", "eval-", "bench-", "labels-")
MANIFEST = "manifest.json"


def hash_json(data: Any) -> str:
    """Stable short hash of JSON-able data."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _update(digest: Any, path: Path) -> None:
    """Feed a file's bytes to `digest`, 1 MiB at a time."""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)


def sha256_file(path: Path) -> str:
    """The full sha256 of a file's bytes."""
    digest = hashlib.sha256()
    _update(digest, path)
    return digest.hexdigest()


def hash_files(path: Path) -> str:
    """Content hash of a file, or of every file below a folder (names and bytes)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        _update(digest, file)
    return digest.hexdigest()[:16]


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: {"bytes", "sha256"}}` of every file below `folder` (manifest excluded)."""
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name != MANIFEST:
            records[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return records


def changed_file(folder: Path, records: dict[str, dict[str, Any]]) -> str | None:
    """The first recorded file that is gone or differs now (size, then sha256), else None."""
    for name, record in records.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != record.get("bytes"):
            return f"{name} changed size ({record.get('bytes')} -> {path.stat().st_size} bytes)"
        if sha256_file(path) != record.get("sha256"):
            return f"{name} changed (sha256 differs)"
    return None


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def copy_preprocessing(source: Path, target: Path) -> list[str]:
    """Copy a model folder's config and tokenizer files (not weights, manifests or caches)."""
    copied = []
    for item in sorted(source.iterdir()):
        if not item.is_file() or item.suffix in MODEL_SUFFIXES or item.name == MANIFEST:
            continue
        if item.name.startswith(SCRATCH_PREFIXES):
            continue
        shutil.copy2(item, target / item.name)
        copied.append(item.name)
    return copied


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target` (no extra space), or copy it where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_artifact_files(source: Path, target: Path) -> None:
    """Link every file of a step folder's artifact into `target` (not its manifest or caches)."""
    for item in sorted(source.iterdir()):
        if item.is_file() and item.name != MANIFEST and not item.name.startswith(SCRATCH_PREFIXES):
            link_or_copy(item, target / item.name)
