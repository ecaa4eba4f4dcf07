"""The config base class and the context every pass (and a task's own pass code) gets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.data import Dataset
from compress.options import StrictOptions
from compress.tasks import DEFAULT_TASK, Task, get_task
from compress.tasks.base import Objective, objective_of

log = logging.getLogger(__name__)


class PassConfig(StrictOptions):
    """Base of every pass config: frozen, and unknown keys are errors."""


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
    progress: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    task: Task = field(default_factory=lambda: get_task(DEFAULT_TASK))
    run_dir: Path | None = None  # the run folder, for passes that package the whole run

    def log(self, message: str) -> None:
        """A progress line of the running pass (INFO on the `compress` logger)."""
        log.info(f"  {message}")

    @property
    def objective(self) -> Objective:
        """What the task's models learn and are validated on."""
        return objective_of(self.task)

    def own_implementation(self, pass_name: str) -> Any:
        """The task's own implementation of `pass_name` (None: the pass's shared one)."""
        return self.task.support[pass_name].implementation()

    def skips_on_failure(self, pass_name: str) -> bool:
        """Whether the task's table lets `pass_name` pass its input on when it cannot work."""
        return self.task.support[pass_name].on_failure == "skip"
