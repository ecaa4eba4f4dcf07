"""How a search ends: `--finish` writes the outputs once, `--keep front` frees the rest."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from compress.artifacts import finished_step, read_json
from compress.search.command import run_search
from compress.search.reclaim import disk_bytes, reclaim
from tests.conftest import write_labelled_csv
from tests.search.test_search import LEAN_RECIPE

SPACE = "passes[0].prune.ffn: [0.25, 0.5]\npasses[2].quantize.cpu_mode: [dynamic, static]\n"


def _keys(run: Path) -> set[str]:
    return {json.loads(m.read_text())["key"] for m in run.glob("*/manifest.json")}


def test_finish_is_idempotent_and_keep_front_frees_the_other_trials(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="compress")
    write_labelled_csv(tmp_path, 96, 5)
    recipe = tmp_path / "lean.yaml"
    recipe.write_text(LEAN_RECIPE.format(model=tiny_model_dir))
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "search"

    def search(**options: object) -> list[Path]:
        return run_search(
            recipe, space, out, "size", 100.0, None, 3, stage="quantize", progress=False,
            **options,  # type: ignore[arg-type]
        )  # fmt: skip

    written = search(keep="all")
    caplog.clear()
    pareto = (out / "pareto.json").read_bytes()
    # --finish again on the same study: the same files, not written again
    assert search(keep="all", finish_only=True) == written
    assert (out / "pareto.json").read_bytes() == pareto
    assert "written already" in caplog.text

    # reclaim, keeping the original and one trial: the others keep recipe and score only
    trials = json.loads((out / "trials.json").read_text())
    folders = sorted({Path(t["folder"]).name for t in trials})
    assert len(folders) >= 2, "the seeded sampler asked one combination only"
    original = Path(read_json(out / "pareto.json")["original"]["folder"]).name
    kept = {original, folders[0]}
    before = disk_bytes(out)
    freed, stored = reclaim(out, kept)
    assert freed > 0 and disk_bytes(out) == before - freed
    used: set[str] = set()
    for folder in (out / "trials").iterdir():
        assert (folder / "recipe.yaml").is_file() and (folder / "score.json").is_file()
        assert (folder / "run").is_dir() == (folder.name in kept)
        used |= _keys(folder / "run")
    assert {p.name for p in (out / "steps").iterdir()} == used and stored == len(used)
    for key in used:  # what stays is whole
        step = finished_step(out / "steps" / key)
        assert step is not None and step.changed_file() is None

    # --finish --keep front: the front's trials (some may just have been reclaimed) are run
    # again where needed and measured; only their steps stay
    caplog.clear()
    written = search(keep="front", finish_only=True)
    assert "--keep front freed" in caplog.text
    rows = json.loads((out / "pareto.json").read_text())
    front = {Path(r["folder"]).name for r in [rows["original"], *rows["rows"]]}
    runs = {f.name for f in (out / "trials").iterdir() if (f / "run").is_dir()}
    assert runs == front
    assert {p.name for p in (out / "steps").iterdir()} == set().union(
        *(_keys(out / "trials" / name / "run") for name in front)
    )
    assert read_json(out / ".finished.json")["written"] == [str(p) for p in written]
