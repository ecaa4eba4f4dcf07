"""What every pass shares: its config base class, its context and its registry entry."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from compress.artifacts import Artifact, ArtifactKind
from compress.data import Dataset
from compress.tasks import Task, get_task

ALL_TASKS = ("text-classification", "image-classification")


def _valid_regexes(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"'{pattern}' is not a valid regex ({exc})") from None
    return value


RegexList = Annotated[list[str], AfterValidator(_valid_regexes)]
"""A list of regular expressions, each checked when the recipe is validated."""


class PassConfig(BaseModel):
    """Base of every pass config: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PassContext:
    """What a pass may use besides its input artifact and config.

    `work_dir` is the pass's own (empty) output folder. Metrics put in
    `metrics` land in the step's manifest and in the report. `task` reads the
    data and loads, saves and feeds the models.
    """

    work_dir: Path
    data: Dataset
    max_length: int
    seed: int
    key: str
    progress: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    task: Task = field(default_factory=lambda: get_task("text-classification"))
    run_dir: Path | None = None  # the run folder, for passes that package the whole run

    def log(self, message: str) -> None:
        print(f"  {message}", flush=True)


Requirement = tuple[str | tuple[str, ...], str]
"""(import name, or a tuple of alternatives any one of which will do; install hint)."""


@dataclass(frozen=True)
class PassInfo:
    """A pass as the registry knows it.

    `consumes`/`produces` are artifact kinds; the recipe validator uses them to
    reject impossible orders before any model loads. `requires` lists the
    optional backends the pass always needs; `requires_for(config)` those that
    depend on its options (e.g. which TensorRT flavour a recipe asks for).
    `check_input(config, previous_pass, previous_config)` returns a problem
    with what the previous step hands over (None: fine), checked at validation.
    `tasks` are the tasks it serves; `check(config, task)` rejects, before any
    model loads, options that the recipe's task cannot use (raise ValueError).
    `consumes` may name several kinds. An `after_report` pass (`bundle`) runs
    after the report is written, so it can read the run's measured figures.
    A `data_parallel` pass trains: under `torchrun` every process runs it on
    its share of the batches; any other pass runs on the main process only.
    """

    name: str
    summary: str
    config: type[PassConfig]
    apply: Callable[[Artifact, Any, PassContext], Artifact]
    consumes: ArtifactKind | tuple[ArtifactKind, ...]
    produces: ArtifactKind
    requires: tuple[Requirement, ...] = ()
    requires_for: Callable[[Any], tuple[Requirement, ...]] | None = None
    check_input: Callable[[Any, str | None, Any], str | None] | None = None
    tasks: tuple[str, ...] = ALL_TASKS
    check: Callable[[Any, str], None] | None = None
    after_report: bool = False
    data_parallel: bool = False

    @property
    def accepts(self) -> tuple[ArtifactKind, ...]:
        """The artifact kinds this pass takes as input."""
        return self.consumes if isinstance(self.consumes, tuple) else (self.consumes,)
