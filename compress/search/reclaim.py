"""`--keep front` (the default): once a search ends, free the disk its other trials used.

The step store keeps the steps that the front's trials, the original and the
hand-written recipe use; every other stored step, and the run folders of the
other trials (hard links into the store), are removed. Each trial folder keeps
its `recipe.yaml`, `score.json` and `log.txt`, so the search still reports
every trial; a resumed search runs a reclaimed step again if it needs it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from compress.artifacts import read_json


def disk_bytes(folder: Path) -> int:
    """Bytes on disk below `folder`, each hard-linked file counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def _step_keys(run: Path) -> set[str]:
    keys = set()
    for manifest in run.glob("*/manifest.json"):
        data = read_json(manifest)
        if isinstance(data, dict) and data.get("key"):
            keys.add(str(data["key"]))
    return keys


def reclaim(out: Path, kept_trials: set[str]) -> tuple[int, int]:
    """Remove what the trial folders not in `kept_trials` (names under `out/trials`) alone use.

    Returns (bytes freed, stored steps kept). Call it when no trial runs.
    """
    before = disk_bytes(out)
    used: set[str] = set()
    for folder in sorted((out / "trials").iterdir()) if (out / "trials").is_dir() else []:
        if not folder.is_dir():
            continue
        if folder.name in kept_trials:
            used |= _step_keys(folder / "run")
        else:
            shutil.rmtree(folder / "run", ignore_errors=True)
    store = out / "steps"
    kept = 0
    for entry in sorted(store.iterdir()) if store.is_dir() else []:
        if entry.name in used:
            kept += 1
        elif entry.is_dir():  # another trial's step, or a writer's leftover (.KEY.partial-*)
            shutil.rmtree(entry, ignore_errors=True)
    return max(0, before - disk_bytes(out)), kept
