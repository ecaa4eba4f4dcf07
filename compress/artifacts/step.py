"""Step folders and their manifests: how a pass's output is written and found again.

Every pass writes its output into its own step folder, `NN-name/`, beside a
`manifest.json` written last. The manifest records the step's cache key, its
artifact, and the size and sha256 of every file the step wrote, so a finished
step is reused only while its files are exactly those. Writes go to a hidden
`.NN-name.partial/` folder that is renamed into place, so an interrupted run
never leaves a half-written step that looks complete.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.artifacts.files import (
    MANIFEST,
    changed_file,
    file_records,
    read_json,
    write_json_atomic,
)
from compress.artifacts.model import Artifact
from compress.errors import OutputError, UserError

MANIFEST_VERSION = 2  # 2: the manifest records every file's size and sha256


@dataclass
class StepResult:
    """A finished step of a run: its folder, artifact, manifest, and whether it was reused."""

    name: str
    folder: Path
    artifact: Artifact
    manifest: dict[str, Any]
    reused: bool

    @property
    def skipped(self) -> str | None:
        """Why the step was skipped (it passed its input on unchanged), or None when it ran."""
        if self.manifest.get("state") == "skipped":
            return str(self.manifest.get("reason") or "skipped")
        reason = self.manifest.get("metrics", {}).get("skipped")  # written before `state`
        return str(reason) if reason else None

    def changed_file(self) -> str | None:
        """The first file of the step that differs from what its manifest recorded, or None."""
        return changed_file(self.folder, self.manifest.get("files", {}))

    def require_unchanged(self) -> StepResult:
        """This step, or a `UserError` naming the first file that changed since it was written."""
        changed = self.changed_file()
        if changed:
            raise UserError(
                f"{self.folder}: {changed} since the step wrote it; run the recipe again"
            )
        return self


def read_manifest(step_dir: Path) -> dict[str, Any] | None:
    """The step's manifest, or None when the step never finished (or an older format wrote it)."""
    data = read_json(step_dir / MANIFEST)
    if not isinstance(data, dict) or data.get("manifest_version") != MANIFEST_VERSION:
        return None
    return data


def finished_step(folder: Path) -> StepResult | None:
    """The step in `folder` as its manifest describes it, or None when it did not finish."""
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    artifact = Artifact.from_json(manifest["artifact"], path=folder)
    return StepResult(str(manifest["pass"]), folder, artifact, manifest, reused=True)


def write_manifest(work: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write `manifest` into the step's (partial) folder, with a record of every file in it.

    Call it last: the files are recorded as they are now.
    """
    from compress.artifacts.records import validate_manifest

    reason = manifest.get("metrics", {}).get("skipped")
    state = {"state": "skipped", "reason": str(reason)} if reason else {"state": "ran"}
    full = {"manifest_version": MANIFEST_VERSION, **manifest, **state, "files": file_records(work)}
    validate_manifest(full, str(work.name))  # the contract the step's readers code against
    write_json_atomic(work / MANIFEST, full)
    return full


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
