"""Search workers that finish the same step at once: the store ends with one whole copy."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from compress.artifacts import StepStore, finished_step, write_manifest

WRITERS = 4


def _step(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"weights" * 100_000)
    for shard in range(300):  # many files: the writers overlap while they link them
        (folder / "sub" / f"shard-{shard}.bin").write_bytes(b"x" * shard)
    artifact = {"kind": "onnx", "key": "k1", "variants": [], "meta": {}}
    write_manifest(folder, {"pass": "export_onnx", "key": "k1", "artifact": artifact})


def _keep(source: str, store: str, start: object) -> None:
    step = finished_step(Path(source))
    assert step is not None
    start.wait()  # type: ignore[attr-defined]
    StepStore(Path(store)).keep(step)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_writers_of_the_same_step_leave_one_whole_copy(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        sources = []
        for writer in range(WRITERS):  # each worker's own run folder holds the step
            folder = tmp_path / f"run{round_}-{writer}" / "02-export_onnx"
            _step(folder)
            sources.append(folder)
        store = tmp_path / f"store{round_}"
        start = context.Barrier(WRITERS)
        writers = [context.Process(target=_keep, args=(str(s), str(store), start)) for s in sources]
        for process in writers:
            process.start()
        for process in writers:
            process.join(timeout=120)
        assert [p.exitcode for p in writers] == [0] * WRITERS
        assert sorted(p.name for p in store.iterdir()) == ["k1"]  # no partial copy left
        kept = finished_step(store / "k1")
        assert kept is not None and kept.changed_file() is None
        inode = (store / "k1" / "model.onnx").stat().st_ino
        assert inode in {(s / "model.onnx").stat().st_ino for s in sources}  # one writer's
