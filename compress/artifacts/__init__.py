"""Artifacts on disk: model variants, step folders with manifests, and run folders.

The bottom layer of compress: every other subsystem writes and reads its
outputs through these modules, and they import nothing of compress but errors.
"""

from __future__ import annotations

from compress.artifacts.files import (
    MANIFEST,
    MODEL_SUFFIXES,
    SCRATCH_PREFIXES,
    copy_preprocessing,
    hash_files,
    hash_json,
    link_artifact_files,
    link_or_copy,
    read_json,
    sha256_file,
    write_json_atomic,
)
from compress.artifacts.model import ARTIFACT_KINDS, Artifact, ArtifactKind, Variant, relocate
from compress.artifacts.model_info import ModelInfo, label_names, read_model_info
from compress.artifacts.run_folder import INPUT_STEP, RunFolder, load_report, step_folder
from compress.artifacts.step import (
    MANIFEST_VERSION,
    StepResult,
    finished_step,
    read_manifest,
    step_writer,
    write_manifest,
)
from compress.artifacts.step_store import StepStore

__all__ = [
    "ARTIFACT_KINDS",
    "INPUT_STEP",
    "MANIFEST",
    "MANIFEST_VERSION",
    "MODEL_SUFFIXES",
    "SCRATCH_PREFIXES",
    "Artifact",
    "ArtifactKind",
    "ModelInfo",
    "RunFolder",
    "StepResult",
    "StepStore",
    "Variant",
    "copy_preprocessing",
    "finished_step",
    "hash_files",
    "hash_json",
    "label_names",
    "link_artifact_files",
    "link_or_copy",
    "load_report",
    "read_json",
    "read_manifest",
    "read_model_info",
    "relocate",
    "sha256_file",
    "step_folder",
    "step_writer",
    "write_json_atomic",
    "write_manifest",
]
