"""Re-open a finished run folder (for `compress report`)."""

from __future__ import annotations

from pathlib import Path

from compress.artifacts import INPUT_STEP, RunFolder


def report_run_folder(run_dir: Path, progress: bool = False) -> None:
    """Rebuild the report of `run_dir` from its resolved recipe and step manifests.

    Every step must have finished and its files must be those its manifest
    recorded; otherwise the error names the step (run the recipe again).
    """
    from compress.data.loaders import load_dataset
    from compress.recipe import load_recipe
    from compress.run.labels import label_with_model
    from compress.run.report_step import make_report

    run = RunFolder(run_dir).require()
    recipe = load_recipe(run.resolved_recipe)
    folders = [INPUT_STEP, *(s.folder for s in recipe.steps)]
    results = [run.require_step(folder) for folder in folders]
    task = recipe.task
    data = load_dataset(recipe.doc.data, Path.cwd(), task.data_reader)
    if not data.labelled:
        data = label_with_model(data, results[0], task, recipe.doc.data.max_length)
    make_report(recipe, results, data, run_dir, progress)
