"""Re-open a finished run folder (for `compress report RUN_DIR`)."""

from __future__ import annotations

from pathlib import Path

from compress.errors import UserError


def report_run_folder(run_dir: Path, progress: bool = True) -> None:
    """Rebuild the report of `run_dir` from its resolved recipe and step manifests."""
    from compress.artifacts import Artifact, StepResult, read_manifest
    from compress.data.loaders import load_dataset
    from compress.recipe import load_recipe
    from compress.report_stages import make_report
    from compress.runner import INPUT_STEP, label_with_model
    from compress.tasks import get_task

    resolved = run_dir / "recipe.resolved.yaml"
    if not resolved.is_file():
        raise UserError(f"{run_dir}: not a run folder (no recipe.resolved.yaml)")
    recipe = load_recipe(resolved)
    results = []
    for name, folder in [("input", INPUT_STEP), *((s.name, s.folder) for s in recipe.steps)]:
        manifest = read_manifest(run_dir / folder)
        if manifest is None:
            raise UserError(f"{run_dir / folder}: step did not finish; run the recipe again")
        artifact = Artifact.from_json(manifest["artifact"], path=run_dir / folder)
        results.append(StepResult(name, run_dir / folder, artifact, manifest, reused=True))
    task = get_task(recipe.doc.task)
    data = load_dataset(recipe.doc.data, Path.cwd(), task.name)
    if not data.labelled:
        data = label_with_model(data, results[0], task, recipe.doc.data.max_length)
    make_report(recipe, results, data, run_dir, progress)
