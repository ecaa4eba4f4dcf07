"""The `bundle` pass itself: its options and what it needs; the bundles are tests/deploy's."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from compress.artifacts import Artifact
from compress.errors import UserError
from compress.passes.base import PassContext
from compress.passes.bundle import PASS, BundleConfig


def test_an_unknown_device_is_refused_with_a_suggestion() -> None:
    """A misspelt target fails validation naming the closest device; a known one validates."""
    with pytest.raises(ValidationError, match="did you mean 'jetson-orin-nano'"):
        BundleConfig(target="jetson-orin-nan")
    assert BundleConfig(target="x86-cpu").model == "auto"


def test_engine_shapes_default_to_the_recipe_length() -> None:
    """Sequence range (min, opt, max): the recipe's max_length unless the options say else."""
    cfg = BundleConfig(target="rtx-4090")
    assert cfg.sequence_range(64) == (1, 64, 64)
    cfg = BundleConfig.model_validate({"target": "rtx-4090", "sequence": {"opt": 32, "max": 96}})
    assert cfg.sequence_range(64) == (1, 32, 96)


def test_bundle_outside_a_run_folder_is_refused_saying_how_to_use_it(tmp_path: Path) -> None:
    """Without a run folder, or in a folder that is not one, the pass refuses with a UserError
    saying it packages a run folder (a recipe step or `compress bundle`)."""
    ctx = PassContext(tmp_path, None, 32, 0, "k", progress=False)  # type: ignore[arg-type]
    artifact = Artifact("onnx", tmp_path, "k", [])
    with pytest.raises(UserError, match="packages a run folder: use it in a recipe or `compress"):
        PASS.apply(artifact, BundleConfig(target="x86-cpu"), ctx)
    ctx.run_dir = tmp_path  # not a run folder either
    with pytest.raises(UserError, match="not a run folder"):
        PASS.apply(artifact, BundleConfig(target="x86-cpu"), ctx)
