"""A model on disk: an artifact folder and the deployable variants (files) inside it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

ArtifactKind = Literal["hf", "onnx", "engine", "bundle"]
ARTIFACT_KINDS: tuple[ArtifactKind, ...] = ("hf", "onnx", "engine", "bundle")


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
    runtime: Literal["torch", "onnxruntime", "onnxruntime-genai", "tensorrt"]
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


def relocate(artifact: Artifact, new_path: Path) -> Artifact:
    """The same artifact after its folder moved (partial folder -> step folder)."""
    return Artifact(artifact.kind, new_path, artifact.key, artifact.variants, artifact.meta)
