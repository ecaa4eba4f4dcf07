"""The benchmark step of a run, by task: classifiers (`report_step`), LMs (`report_generation`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.artifacts import StepResult
from compress.data import Dataset
from compress.recipe import Recipe


def make_run_report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> dict[str, Any]:
    """Measure the run's stages against the original and write its report."""
    if recipe.doc.task == "text-generation":
        from compress.run.report_generation import make_generation_report

        return make_generation_report(recipe, results, data, out, progress)
    from compress.run.report_step import make_report

    return make_report(recipe, results, data, out, progress)
