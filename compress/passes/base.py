"""What every pass shares: its config base class, its context and its registry entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compress.artifacts import Artifact, ArtifactKind, ModelInfo
from compress.options import RegexList
from compress.passkit.context import PassConfig, PassContext
from compress.tasks import Task
from compress.tasks.base import load_reference

__all__ = ["PassConfig", "PassContext", "PassInfo", "RegexList", "Requirement", "Variants"]


Requirement = tuple[str | tuple[str, ...], str]
"""(import name, or a tuple of alternatives any one of which will do; install hint)."""

Variants = tuple[tuple[str, str], ...]
"""(precision, target) of each model file an artifact holds, e.g. (("int8", "tensorrt"),)."""


@dataclass(frozen=True)
class PassInfo:
    """A pass as the registry knows it.

    Which tasks a pass serves, and which of its options each task refuses, is
    the tasks' declared table (`Task.support`), not the pass's.

    `consumes`/`produces` are artifact kinds; the recipe validator uses them to
    reject impossible orders before any model loads (`consumes` may name
    several). `requires` lists the optional backends the pass always needs;
    `requires_for(config)` those that depend on its options (e.g. which
    TensorRT flavour a recipe asks for). `outputs(config, task)` declares the
    (precision, target) of the files the pass writes, and `check_input(config,
    handed)` returns a problem with what the previous pass declared (None:
    fine), both checked at validation. An `after_report` pass
    (`bundle`) runs after the report is written, so it can read the run's
    measured figures. A `data_parallel` pass trains: under `torchrun` every
    process runs it on its share of the batches; any other pass runs on the
    main process only. `check_model(config, info)` rejects, at validation, a
    model the pass cannot handle (its architecture or tokenizer, read from the
    model folder's JSON; raise ValueError); `new_model(config)` names the model
    a pass replaces its input with (distill's `student`), so later passes are
    checked against that one. A pass that does not `compress` (fine-tuning) leaves
    the model the user had: the report's original is the output of the
    leading passes that do not compress.
    """

    name: str
    summary: str
    config: type[PassConfig]
    apply: Callable[[Artifact, Any, PassContext], Artifact]
    consumes: ArtifactKind | tuple[ArtifactKind, ...]
    produces: ArtifactKind
    requires: tuple[Requirement, ...] = ()
    requires_for: Callable[[Any], tuple[Requirement, ...]] | None = None
    outputs: Callable[[Any, Task], Variants] | None = None
    check_input: Callable[[Any, Variants], str | None] | None = None
    check_model: Callable[[Any, ModelInfo], None] | None = None
    new_model: Callable[[Any], str | None] | None = None
    after_report: bool = False
    data_parallel: bool = False
    compresses: bool = True

    @property
    def accepts(self) -> tuple[ArtifactKind, ...]:
        """The artifact kinds this pass takes as input."""
        return self.consumes if isinstance(self.consumes, tuple) else (self.consumes,)

    def handed_over(self, config: Any, task: Task) -> Variants:
        """What this pass, with `config`, hands the next one: a portable FP32 model by default
        (a task with its own implementation of the pass may declare other files)."""
        own = task.support.get(self.name)
        if own is not None and own.outputs is not None:
            declared: Variants = load_reference(own.outputs)(config)
            return declared
        if self.outputs is not None:
            return self.outputs(config, task)
        return (("fp32", "portable"),) if self.produces == "hf" else ()
