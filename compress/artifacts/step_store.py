"""A store of finished steps shared by several run folders, addressed by step key.

A step's key hashes everything that shapes its output (see
`compress.run.steps`), so two runs that share a prefix of passes (the trials
of `compress search`: the same fine-tuned teacher, the same distilled
student) compute it once: the first run keeps its finished step here, the
others link it into their own run folder. Files are hard-linked where the
filesystem allows (no extra space), else copied; a kept step is used only
while every file its manifest recorded is unchanged.

    store/
      3f2a.../   a finished step folder (manifest.json and its files), by key
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compress.artifacts.files import link_or_copy
from compress.artifacts.step import StepResult, finished_step, step_writer


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
        with step_writer(target) as work:
            _link_tree(step.folder, work)
