"""A store of finished steps shared by several run folders, addressed by step key.

A step's key hashes everything that shapes its output (see
`compress.run.steps`), so two runs that share a prefix of passes (the trials
of `compress search`: the same fine-tuned teacher, the same distilled
student) compute it once: the first run keeps its finished step here, the
others link it into their own run folder. Files are hard-linked where the
filesystem allows (no extra space), else copied; a kept step is used only
while every file its manifest recorded is unchanged. Several processes may
keep the same step at once: each links it into its own hidden folder and
renames it into place; the first rename wins and the others drop their copy,
so a stored step is always whole and never replaced.

    store/
      3f2a.../   a finished step folder (manifest.json and its files), by key
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from compress.artifacts.files import link_or_copy
from compress.artifacts.step import StepResult, finished_step, step_writer
from compress.errors import OutputError


def _link_tree(source: Path, target: Path) -> None:
    for item in sorted(source.rglob("*")):
        if item.is_symlink():
            continue  # step files are plain files; a link would point elsewhere once moved
        dest = target / item.relative_to(source)
        if item.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif item.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(item, dest)


@dataclass(frozen=True)
class StepStore:
    """Finished steps by key, in `path`."""

    path: Path

    def _folder(self, key: str) -> Path:
        if not key or not all(c.isalnum() for c in key):
            raise ValueError(f"not a step key: {key!r}")
        return self.path / key

    def fetch(self, key: str, folder: Path) -> StepResult | None:
        """The stored step with `key`, linked into `folder` (replacing it), or None."""
        stored = finished_step(self._folder(key))
        if stored is None or stored.manifest.get("key") != key or stored.skipped:
            return None
        if stored.changed_file():
            return None
        with step_writer(folder) as work:
            _link_tree(stored.folder, work)
        return finished_step(folder)

    def keep(self, step: StepResult) -> None:
        """Keep a finished step (not a skipped one) under its key, unless already kept."""
        key = str(step.manifest.get("key", ""))
        if not key or step.skipped:
            return
        target = self._folder(key)
        if finished_step(target) is not None:
            return
        partial = target.with_name(f".{key}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            partial.mkdir(parents=True)
            _link_tree(step.folder, partial)
            _publish(partial, target)
        except OSError as exc:
            if OutputError.caused(exc, self.path):
                raise OutputError.from_os_error(exc, target) from None
            raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _publish(partial: Path, target: Path) -> None:
    """Rename `partial` to `target`, unless another process stored a finished step there first."""
    for _ in range(3):
        try:
            os.rename(partial, target)  # refused when `target` is a folder with files
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if finished_step(target) is not None:
            return  # another writer won; its copy is as good as ours
        stale = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):  # an unfinished leftover: move it aside
            os.rename(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
