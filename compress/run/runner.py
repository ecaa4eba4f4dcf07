"""Run a validated recipe: input model -> passes (cached per step) -> report.

The run folder (see `compress.artifacts.run_folder`) holds the resolved
recipe, `reproduce.json` (hashes of the recipe, data and input model, the
seed and package versions), `00-input/` (the input model as a classifier for
the recipe's labels), one `NN-pass/` folder per pass, and the report. A lock
file keeps a second run from writing the same folder at the same time. A
finished step is reused while its key and its files are unchanged (see
`compress.run.steps`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from compress._version import __version__
from compress.artifacts import RunFolder, StepResult, StepStore, hash_json
from compress.data import Dataset
from compress.errors import OutputError, UserError
from compress.recipe import Recipe
from compress.run import distributed as dist
from compress.run.labels import label_with_model
from compress.run.lock import run_folder_lock
from compress.run.noise import quiet_backends
from compress.run.steps import input_step, run_step
from compress.system import package_versions

log = logging.getLogger(__name__)


def default_out_dir(recipe: Recipe) -> Path:
    return Path("runs") / recipe.name


AfterStep = Callable[[StepResult], None]
"""Called with every finished step (input included), in order; raising stops the run."""


def run_recipe(
    recipe: Recipe,
    out_dir: Path | None = None,
    progress: bool = False,
    report: bool = True,
    *,
    store: StepStore | None = None,
    after_step: AfterStep | None = None,
) -> list[StepResult]:
    """Run every pass (reusing finished steps), then benchmark and write the report.

    Progress lines go to the `compress` logger (INFO); `progress=True` also shows
    progress bars (on stderr). Nothing is printed otherwise.

    With a `store`, finished steps are also taken from (and kept in) a store
    shared with other run folders (see `compress.artifacts.step_store`).

    Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) every process calls
    this: training passes run on all of them, everything else on rank 0, which
    alone writes the run folder, prints, and makes the report (see
    `compress.run.distributed`). Every process returns the same steps.
    """
    out = Path(out_dir) if out_dir is not None else default_out_dir(recipe)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the run folder ({exc.strerror})") from None
    try:
        with (
            dist.quiet_unless_main(),
            quiet_backends(),
            dist.process_group(),
            contextlib.ExitStack() as lock,
        ):
            with dist.main_first("locking the run folder"):
                if dist.is_main():
                    lock.enter_context(run_folder_lock(out))
            run = RunFolder(out, store)
            return _run_locked(recipe, run, progress and dist.is_main(), report, after_step)
    except OSError as exc:
        if OutputError.caused(exc, out):
            raise OutputError.from_os_error(exc, out) from None
        raise


def _run_locked(
    recipe: Recipe, run: RunFolder, progress: bool, report: bool, after_step: AfterStep | None
) -> list[StepResult]:
    def finished(result: StepResult) -> StepResult:
        if after_step is not None:
            after_step(result)
        return result

    main = dist.is_main()
    processes = f" ({dist.world_size()} processes)" if dist.world_size() > 1 else ""
    log.info(f"compress {__version__}: recipe {recipe.file} -> {run.path}{processes}")

    from compress.data.loaders import load_dataset

    task = recipe.task
    with dist.main_first("preparing the data and the input model"):
        data = load_dataset(
            recipe.doc.data, recipe.file.parent, task.data_reader
        )  # may fill a cache
        if main:
            run.write_recipe(recipe.resolved)
        results = [finished(input_step(recipe, data, run))]
        if not data.labelled:
            data = label_with_model(data, results[0], task, recipe.doc.data.max_length)
    names = data.label_names
    shown = names if len(names) <= 12 else f"{len(names)} classes"
    log.info(
        f"data: {data.source} ({len(data.train)} train / {len(data.validation)} validation / "
        f"{len(data.test)} test, labels {shown})"
    )
    if main:
        reproduce = {
            "recipe_sha": hash_json(recipe.resolved),
            "seed": recipe.doc.seed,
            "data_key": data.key,
            "input_model_key": results[0].artifact.key,
            "versions": package_versions(),
        }
        log.debug(f"reproduce: {reproduce}")
        run.write_reproduce(reproduce)
    total = len(recipe.steps)
    # passes that package the run (bundle) come last and run after the report, to read it
    packaging = [s for s in recipe.steps if s.info.after_report]
    for step in recipe.steps:
        if step is (packaging[0] if packaging else None):
            if not main:
                return results  # the report and packaging are rank 0's alone
            if report:
                _report(recipe, results, data, run.path, progress)
        log.info(f"[{step.index + 1}/{total}] {step.name}")
        results.append(finished(run_step(recipe, step, results[step.source], data, run, progress)))
    if report and not packaging and main:
        _report(recipe, results, data, run.path, progress)
    return results


def _report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> None:
    from compress.run.report_step import make_report
    from compress.tracking import track_run

    make_report(recipe, results, data, out, progress)
    # the report is on disk: a tracker that cannot be reached only warns
    track_run(recipe.doc.tracking, out, recipe.name, recipe.resolved)
