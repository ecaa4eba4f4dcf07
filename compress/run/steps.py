"""One step of a run: reuse its finished folder, or run its pass, and write its manifest.

A step's key hashes what shapes its output (pass, config, parent artifact,
data, seed, version). A finished step is reused when its manifest carries
that key and every file it recorded is unchanged (size and sha256); a changed
file is named and the step runs again.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress._version import __version__
from compress.artifacts import (
    INPUT_STEP,
    Artifact,
    RunFolder,
    StepResult,
    Variant,
    hash_files,
    hash_json,
    relocate,
    step_writer,
    write_manifest,
)
from compress.data import Dataset
from compress.errors import OutputError
from compress.passes.base import PassContext
from compress.recipe import PassStep, Recipe
from compress.run import distributed as dist
from compress.system import package_versions

log = logging.getLogger(__name__)


def _manifest(
    name: str,
    key: str,
    parent: str | None,
    config: dict[str, Any],
    artifact: Artifact,
    metrics: dict[str, Any],
    started: float,
    data: Dataset,
    seed: int,
) -> dict[str, Any]:
    return {
        "pass": name,
        "key": key,
        "parent_key": parent,
        "config": config,
        "data_key": data.key,
        "seed": seed,
        "artifact": artifact.to_json(),
        "metrics": metrics,
        "versions": package_versions(),
        "processes": dist.world_size(),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 2),
    }


def reuse(run: RunFolder, folder: str, key: str, verify: bool = True) -> StepResult | None:
    """The finished step in `folder` if it has `key` and (with `verify`) unchanged files.

    A run with a step store (`RunFolder.store`) also takes the step from there
    when another run finished it.
    """
    step = run.step(folder)
    if step is None or step.manifest.get("key") != key:
        return _from_store(run, folder, key)
    if step.skipped:
        return None  # skipped for want of a backend: try again, it may be installed now
    if verify:
        changed = step.changed_file()
        if changed:
            log.warning(f"{step.folder}: {changed} since the step wrote it; running it again")
            return _from_store(run, folder, key)
    return step


def _from_store(run: RunFolder, folder: str, key: str) -> StepResult | None:
    if run.store is None or not dist.is_main():
        return None
    step = run.store.fetch(key, run.path / folder)
    if step is not None:
        log.info(f"  {folder}: the same step finished in another run; linked from {run.store.path}")
    return step


def _kept(run: RunFolder, step: StepResult) -> StepResult:
    if run.store is not None and dist.is_main():
        run.store.keep(step)
    return step


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def input_step(recipe: Recipe, data: Dataset, run: RunFolder) -> StepResult:
    """`00-input`: the input model as a classifier for the recipe's labels."""
    task = recipe.task
    spec = recipe.doc.model
    location = task.resolve(spec.source, recipe.file.parent)
    source_key = (
        hash_files(Path(location)) if Path(location).exists() else f"{location}@{spec.revision}"
    )
    labels = data.label_names if data.labelled else None
    key = hash_json(
        {"source": source_key, "labels": labels, "seed": recipe.doc.seed, "version": __version__}
        | ({"image_size": spec.image_size} if spec.image_size else {})
    )
    folder = run.path / INPUT_STEP
    if not dist.is_main():
        return _written_by_main(run, INPUT_STEP, key)
    log.debug(f"{INPUT_STEP}: key {key}")
    cached = reuse(run, INPUT_STEP, key)
    if cached is not None:
        log.info(f"model: {spec.source} (reused {folder})")
        warned = cached.manifest.get("metrics", {}).get("load_check", {}).get("warning")
        if warned:  # the task's signs that the model did not load right, found when it loaded
            log.warning(warned)
        return cached
    log.info(f"model: {spec.source} ({location})")
    started = time.time()
    seed_everything(recipe.doc.seed)  # a new head (or model) is initialised the same every run
    model, processor = task.load(location, labels, spec.revision)
    check = getattr(task, "check_loaded", None)  # text-generation: tokenizer and perplexity
    checked = check(model, processor, data, recipe.doc.data.max_length) if check else {}
    if spec.image_size is not None and spec.image_size != processor.size:
        import dataclasses

        log.info(
            f"  images resized to {spec.image_size}x{spec.image_size} (model: {processor.size})"
        )
        processor = dataclasses.replace(processor, size=spec.image_size)
    with step_writer(folder) as work:
        task.save(model, processor, work)
        variant = Variant("fp32", runtime="torch", precision="fp32", target="portable")
        meta = task.model_meta(model, processor, recipe.doc.data.max_length)
        artifact = Artifact("hf", folder, key, [variant], meta)
        manifest = _manifest(
            "input",
            key,
            None,
            spec.model_dump(mode="json"),
            artifact,
            {"source": location, **checked},
            started,
            data,
            recipe.doc.seed,
        )
        manifest = write_manifest(work, manifest)
    return _kept(run, StepResult("input", folder, artifact, manifest, reused=False))


def _written_by_main(run: RunFolder, folder: str, key: str) -> StepResult:
    """The step rank 0 just wrote, as another rank sees it (it must share the folder)."""
    result = reuse(run, folder, key, verify=False)
    if result is None:
        raise OutputError(
            f"{run.path / folder}: process {dist.rank()} cannot read the step the main process "
            "wrote; the run folder (--out) must be on a filesystem every node shares"
        )
    return result


def run_step(
    recipe: Recipe,
    step: PassStep,
    parent: StepResult,
    data: Dataset,
    run: RunFolder,
    progress: bool,
) -> StepResult:
    """Reuse the step's folder, or run the pass.

    With several processes, a cached step is reused by all of them; a
    data-parallel pass runs on every rank (rank 0 writes the step folder, the
    others work in a private folder deleted afterwards) and another pass on
    rank 0 only; either way the others then read rank 0's folder. Passes after
    the report run on rank 0 alone (the others have finished).
    """
    config = step.config.model_dump(mode="json")
    inputs: dict[str, Any] = {
        "pass": step.name,
        "config": config,
        "parent": parent.artifact.key,
        "data": data.key,
        "max_length": recipe.doc.data.max_length,
        "seed": recipe.doc.seed,
        "version": __version__,
    }
    if step.info.data_parallel and dist.world_size() > 1:
        inputs["processes"] = dist.world_size()  # the effective batch grows with them
        # steps trained before the schedule stepped once per global step are not reused
        inputs["lr_schedule"] = "per-global-step"
    key = hash_json(inputs)
    log.debug(f"  {step.folder}: key {key}")
    folder = run.path / step.folder
    # rank 0 checks the files (the others follow its verdict through all_ok below)
    cached = reuse(run, step.folder, key, verify=dist.is_main())
    alone = step.info.after_report or dist.world_size() == 1
    # every rank must take the same branch: reuse only when all of them can
    if (cached is not None) if alone else dist.all_ok(cached is not None):
        assert cached is not None
        log.info(f"  reused {folder} (same input, config and data)")
        return cached
    main = dist.is_main()
    what = f"running {step.name} ({folder})"
    if alone:
        result = _execute(recipe, step, parent, data, run, progress, key, folder)
    elif step.info.data_parallel:
        with dist.together(what):
            if main:
                result = _execute(recipe, step, parent, data, run, progress, key, folder)
            else:
                with tempfile.TemporaryDirectory(prefix=f"compress-rank{dist.rank()}-") as tmp:
                    private = Path(tmp) / step.folder
                    _execute(recipe, step, parent, data, run, False, key, private)
        with dist.main_first(f"reading {folder}"):
            if not main:
                result = _written_by_main(run, step.folder, key)
    else:
        with dist.main_first(what):
            if main:
                result = _execute(recipe, step, parent, data, run, progress, key, folder)
            else:
                result = _written_by_main(run, step.folder, key)
    if main:
        log.info(f"  done in {result.manifest['seconds']:.0f} s -> {folder}")
    return result


def _execute(
    recipe: Recipe,
    step: PassStep,
    parent: StepResult,
    data: Dataset,
    run: RunFolder,
    progress: bool,
    key: str,
    folder: Path,
) -> StepResult:
    """Run the pass into `folder` (through a partial folder) and write its manifest."""
    started = time.time()
    with step_writer(folder) as work:
        ctx = PassContext(
            work_dir=work,
            data=data,
            max_length=recipe.doc.data.max_length,
            seed=recipe.doc.seed,
            key=key,
            progress=progress,
            task=recipe.task,
            run_dir=run.path,
        )
        produced = step.info.apply(parent.artifact, step.config, ctx)
        artifact = relocate(produced, folder)
        manifest = _manifest(
            step.name,
            key,
            parent.artifact.key,
            step.config.model_dump(mode="json"),
            artifact,
            ctx.metrics,
            started,
            data,
            recipe.doc.seed,
        )
        manifest = write_manifest(work, manifest)
    return _kept(run, StepResult(step.name, folder, artifact, manifest, reused=False))
