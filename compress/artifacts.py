"""Model artifacts, step folders and manifests.

Every pass writes its output into its own step folder, `NN-name/`, beside a
`manifest.json` written last. A step folder whose manifest carries the same
cache key as the current run is reused as it is; anything else is rebuilt.
Writes go to a hidden `.NN-name.partial/` folder that is renamed into place,
so an interrupted run never leaves a half-written step that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from compress.errors import OutputError

ArtifactKind = Literal["hf", "onnx", "engine", "bundle"]
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Variant:
    """One deployable model file inside an artifact folder.

    `file` is relative to the artifact folder (None for a Hugging Face folder,
    which is loaded as a whole). `target` says what the file is for: `cpu`
    (fastest on ONNX Runtime CPU), `tensorrt` (symmetric Q/DQ that TensorRT
    accepts, or a TensorRT engine), or `portable` (plain ONNX any runtime reads).
    A `tensorrt` runtime variant is a serialized engine: it needs an NVIDIA GPU.
    """

    name: str
    runtime: Literal["torch", "onnxruntime", "tensorrt"]
    precision: str
    target: str
    file: str | None = None
    note: str = ""


@dataclass
class Artifact:
    """A model on disk: a folder holding one or more variants and the preprocessing files."""

    kind: ArtifactKind
    path: Path
    key: str
    variants: list[Variant]
    meta: dict[str, Any] = field(default_factory=dict)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(
            f"{self.path} has no variant '{name}' (has {[v.name for v in self.variants]})"
        )

    def for_target(self, target: str) -> Variant:
        """The variant built for `target`, else the portable one, else the first."""
        for wanted in (target, "portable"):
            for v in self.variants:
                if v.target == wanted:
                    return v
        return self.variants[0]

    def file(self, variant: Variant) -> Path:
        return self.path / variant.file if variant.file else self.path

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "key": self.key,
            "variants": [asdict(v) for v in self.variants],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path | None = None) -> Artifact:
        return cls(
            kind=data["kind"],
            path=Path(path if path is not None else data["path"]),
            key=data["key"],
            variants=[Variant(**v) for v in data["variants"]],
            meta=data.get("meta", {}),
        )


@dataclass
class StepResult:
    """A finished step of a run: its folder, artifact, manifest, and whether it was reused."""

    name: str
    folder: Path
    artifact: Artifact
    manifest: dict[str, Any]
    reused: bool


def hash_json(data: Any) -> str:
    """Stable short hash of JSON-able data."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def hash_files(path: Path) -> str:
    """Content hash of a file, or of every file below a folder (names and bytes)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def dir_size(path: Path, files: list[str] | None = None) -> int:
    """Bytes on disk of a file, a folder, or the named files inside a folder."""
    if path.is_file():
        return path.stat().st_size
    if files is not None:
        return sum((path / f).stat().st_size for f in files)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def read_manifest(step_dir: Path) -> dict[str, Any] | None:
    """The step's manifest, or None when the step never finished."""
    try:
        data: dict[str, Any] = json.loads((step_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if data.get("manifest_version") == MANIFEST_VERSION else None


@contextmanager
def step_writer(step_dir: Path) -> Iterator[Path]:
    """Yield a fresh partial folder; on success it replaces `step_dir` atomically.

    The caller writes the manifest into the yielded folder last. If the body
    fails, the partial folder is removed (it may be filling a full disk) and a
    failed write (no space, read-only, no permission) becomes an `OutputError`
    naming the step.
    """
    partial = step_dir.with_name(f".{step_dir.name}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        yield partial
        if step_dir.exists():
            stale = step_dir.with_name(f".{step_dir.name}.old-{int(time.time())}")
            os.replace(step_dir, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(partial, step_dir)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError) and OutputError.caused(exc, step_dir.parent):
            raise OutputError.from_os_error(exc, step_dir) from None
        raise


MODEL_SUFFIXES = (".onnx", ".onnx_data", ".data", ".safetensors", ".bin", ".engine", ".plan")


def copy_preprocessing(source: Path, target: Path) -> list[str]:
    """Copy a model folder's config and tokenizer files (not weights, manifests or caches)."""
    copied = []
    for item in sorted(source.iterdir()):
        if not item.is_file() or item.suffix in MODEL_SUFFIXES or item.name == MANIFEST:
            continue
        if item.name.startswith(("bench-", ".")):
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


def relocate(artifact: Artifact, new_path: Path) -> Artifact:
    """The same artifact after its folder moved (partial folder -> step folder)."""
    return Artifact(artifact.kind, new_path, artifact.key, artifact.variants, artifact.meta)
