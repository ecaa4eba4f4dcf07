"""The benchmark step of a run: the task's measurer (`Task.report`) measures every stage
against the original (classifiers and sentence embedders: `report_step`; LMs:
`report_generation`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.artifacts import StepResult
from compress.data import Dataset
from compress.recipe import Recipe
from compress.tasks.base import load_reference


def make_run_report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> dict[str, Any]:
    """Measure the run's stages against the original and write its report."""
    measure = load_reference(recipe.task.report)
    report: dict[str, Any] = measure(recipe, results, data, out, progress)
    return report
