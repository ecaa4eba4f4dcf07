"""What a validated recipe is: its top-level document, its `model:` section and its steps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from compress.artifacts import step_folder
from compress.benchmark.settings import BenchmarkSettings
from compress.data.spec import DataSpec
from compress.options import StrictOptions
from compress.passes.base import PassConfig, PassInfo
from compress.tasks import DEFAULT_TASK, TASK_NAMES, Task
from compress.tracking.settings import TrackingSettings


class ModelSpec(StrictOptions):
    """The `model:` section: what to compress.

    `source` is an offline default (`minilm-l6`: all-MiniLM-L6-v2 from PyPI;
    `mnist-cnn`, `efficientnet-lite0` for images), a local model folder, or a
    hub id such as `bert-base-uncased`. Left out, a recipe uses its task's
    default (`compress.tasks`), or must name one.
    """

    source: str = Field("minilm-l6", description="offline name, local model folder, or hub id")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit)")
    image_size: int | None = Field(
        None,
        ge=8,
        le=4096,
        description="image models: resize inputs to this size instead of the model's own "
        "(e.g. 64 to fine-tune an ImageNet CNN on small images on a CPU)",
    )


class RecipeDoc(StrictOptions):
    """The top level of a recipe file."""

    name: str | None = Field(None, description="run name; default: the file name")
    task: str = Field(DEFAULT_TASK, description=f"one of {', '.join(TASK_NAMES)}")
    seed: int = Field(0, description="seed for training, sampling and calibration")
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    passes: list[Any] = Field(default_factory=list, description="ordered passes")
    benchmark: BenchmarkSettings = BenchmarkSettings()
    tracking: TrackingSettings | None = Field(
        None,
        exclude=True,  # where a run is logged changes no result (and a URI may hold secrets)
        description="log the run to an experiment tracker: {mlflow: {uri, experiment}}",
    )

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        # the default run folder is runs/<name>: a path here would write elsewhere
        if value is not None and (
            not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0")
        ):
            raise ValueError("must be a plain name (no '/', '\\', '..'), it names runs/<name>")
        return value

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASK_NAMES:
            raise ValueError(f"must be one of {', '.join(TASK_NAMES)}")
        return value

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int) -> int:
        if not 0 <= value < 2**32:  # what NumPy and torch accept as a seed
            raise ValueError(f"must be between 0 and {2**32 - 1}")
        return value


@dataclass(frozen=True)
class PassStep:
    """One validated pass of a recipe.

    `parent` is the index, in a run's results (0: the input model, k: the
    k-th pass), of the step whose model this pass takes: the pass before it,
    unless the recipe names another with `from:`.
    """

    index: int
    name: str
    config: PassConfig
    info: PassInfo
    parent: int = -1  # -1: the pass right before it (results[index])

    @property
    def folder(self) -> str:
        return step_folder(self.index, self.name)

    @property
    def source(self) -> int:
        """Index in the run's results of the model this pass takes."""
        return self.index if self.parent < 0 else self.parent


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: the document, its passes, and where it came from."""

    doc: RecipeDoc
    steps: list[PassStep]
    file: Path
    resolved: dict[str, Any]
    task: Task  # `doc.task` resolved once, when the recipe is loaded

    @property
    def name(self) -> str:
        return self.doc.name or self.file.stem
