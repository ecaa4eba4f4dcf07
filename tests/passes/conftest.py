from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from compress.artifacts import Artifact, Variant
from compress.data import Dataset
from compress.passes.base import PassContext


@pytest.fixture()
def make_ctx(tmp_path: Path, tiny_dataset: Dataset) -> Callable[[str], PassContext]:
    def make(name: str) -> PassContext:
        work = tmp_path / name
        work.mkdir()
        return PassContext(
            work_dir=work, data=tiny_dataset, max_length=32, seed=0, key=name, progress=False
        )

    return make


@pytest.fixture()
def tiny_hf(tiny_model_dir: Path) -> Artifact:
    return Artifact("hf", tiny_model_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])
