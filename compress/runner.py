"""Run a validated recipe: input model -> passes (cached per step) -> report.

The run folder holds `recipe.resolved.yaml`, `reproduce.json` (hashes of the
recipe, data and input model, the seed and package versions), `00-input/`
(the input model as a classifier for the recipe's labels), one `NN-pass/`
folder per pass, and `report.json` / `.md` / `.html` / `.png`. A lock file
keeps a second run from writing the same folder at the same time. A step whose manifest carries the
same key (pass, config, parent artifact, data, seed, version) is reused.
"""

from __future__ import annotations

import contextlib
import json
import platform
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from compress import __version__
from compress import distributed as dist
from compress.artifacts import (
    MANIFEST,
    MANIFEST_VERSION,
    Artifact,
    StepResult,
    Variant,
    hash_files,
    hash_json,
    read_manifest,
    relocate,
    step_writer,
    write_json_atomic,
)
from compress.data import Dataset, Split
from compress.errors import OutputError, UserError
from compress.passes.base import PassContext
from compress.recipe import PassStep, Recipe
from compress.run_lock import run_folder_lock
from compress.tasks import Task, get_task

INPUT_STEP = "00-input"


def versions() -> dict[str, str]:
    """Versions of the packages that shape results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "compress": __version__}
    for name in ("torch", "transformers", "optimum", "onnx", "onnxruntime", "peft", "accelerate"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def default_out_dir(recipe: Recipe) -> Path:
    return Path("runs") / recipe.name


def run_recipe(
    recipe: Recipe, out_dir: Path | None = None, progress: bool = True, report: bool = True
) -> list[StepResult]:
    """Run every pass (reusing finished steps), then benchmark and write the report.

    Under `torchrun` / `accelerate launch` (WORLD_SIZE > 1) every process calls
    this: training passes run on all of them, everything else on rank 0, which
    alone writes the run folder, prints, and makes the report (see
    `compress.distributed`). Every process returns the same steps.
    """
    out = Path(out_dir) if out_dir is not None else default_out_dir(recipe)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the run folder ({exc.strerror})") from None
    try:
        with (
            dist.quiet_unless_main(),
            dist.process_group(),
            contextlib.ExitStack() as lock,
        ):
            with dist.main_first("locking the run folder"):
                if dist.is_main():
                    lock.enter_context(run_folder_lock(out))
            return _run_locked(recipe, out, progress and dist.is_main(), report)
    except OSError as exc:
        if OutputError.caused(exc, out):
            raise OutputError.from_os_error(exc, out) from None
        raise


def _run_locked(recipe: Recipe, out: Path, progress: bool, report: bool) -> list[StepResult]:
    main = dist.is_main()
    processes = f" ({dist.world_size()} processes)" if dist.world_size() > 1 else ""
    print(f"compress {__version__}: recipe {recipe.file} -> {out}{processes}")

    from compress.data.loaders import load_dataset

    task = get_task(recipe.doc.task)
    with dist.main_first("preparing the data and the input model"):
        data = load_dataset(recipe.doc.data, recipe.file.parent, task.name)  # may fill a cache
        if main:
            resolved = yaml.safe_dump(recipe.resolved, sort_keys=False)
            (out / "recipe.resolved.yaml").write_text(resolved)
        results = [_input_step(recipe, data, out)]
        if not data.labelled:
            data = label_with_model(data, results[0], task, recipe.doc.data.max_length)
    names = data.label_names
    shown = names if len(names) <= 12 else f"{len(names)} classes"
    print(
        f"data: {data.source} ({len(data.train)} train / {len(data.validation)} validation / "
        f"{len(data.test)} test, labels {shown})"
    )
    if main:
        write_json_atomic(
            out / "reproduce.json",
            {
                "recipe_sha": hash_json(recipe.resolved),
                "seed": recipe.doc.seed,
                "data_key": data.key,
                "input_model_key": results[0].artifact.key,
                "versions": versions(),
            },
        )
    total = len(recipe.steps)
    # passes that package the run (bundle) come last and run after the report, to read it
    packaging = [s for s in recipe.steps if s.info.after_report]
    for step in recipe.steps:
        if step is (packaging[0] if packaging else None):
            if not main:
                return results  # the report and packaging are rank 0's alone
            if report:
                _report(recipe, results, data, out, progress)
        print(f"[{step.index + 1}/{total}] {step.name}")
        results.append(_run_step(recipe, step, results[-1], data, out, progress))
    if report and not packaging and main:
        _report(recipe, results, data, out, progress)
    return results


def _report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> None:
    from compress.report_stages import make_report

    make_report(recipe, results, data, out, progress)


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
        "manifest_version": MANIFEST_VERSION,
        "pass": name,
        "key": key,
        "parent_key": parent,
        "config": config,
        "data_key": data.key,
        "seed": seed,
        "artifact": artifact.to_json(),
        "metrics": metrics,
        "versions": versions(),
        "processes": dist.world_size(),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 2),
    }


def _reuse(folder: Path, key: str, name: str) -> StepResult | None:
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("key") != key:
        return None
    if manifest.get("metrics", {}).get("skipped"):
        return None  # skipped for want of a backend: try again, it may be installed now
    artifact = Artifact.from_json(manifest["artifact"], path=folder)
    return StepResult(name, folder, artifact, manifest, reused=True)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for a reproducible run."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def label_with_model(data: Dataset, step: StepResult, task: Task, max_length: int) -> Dataset:
    """Unlabelled data labelled with the input model's top-1 class (cached in its folder)."""
    import numpy as np

    from compress.training import predict_logits

    cache = step.folder / f"labels-{data.key}.json"
    if cache.is_file():
        labels = json.loads(cache.read_text())
    else:
        model, processor = task.load(str(step.artifact.path), None)
        labels = {"names": task.label_names(model)}
        for name in ("train", "validation", "test"):
            split = data.split(name)
            encoded = task.encode(processor, split.inputs, max_length)
            logits = predict_logits(model, processor, encoded, task, desc=f"label {name}")
            labels[name] = logits.argmax(-1).tolist()
        write_json_atomic(cache, labels)
    print(f"data: {data.source} has no labels: labelled with the input model's top-1 class")

    def relabel(name: str) -> Split:
        return Split(data.split(name).inputs, np.asarray(labels[name], dtype=np.int64))

    return replace(
        data,
        label_names=list(labels["names"]),
        key=hash_json([data.key, step.artifact.key, "top-1 labels"]),
        labelled=True,
        notes={**data.notes, "labels": "top-1 class of the input model"},
        train=relabel("train"),
        validation=relabel("validation"),
        test=relabel("test"),
    )


def _input_step(recipe: Recipe, data: Dataset, out: Path) -> StepResult:
    task = get_task(recipe.doc.task)
    spec = recipe.doc.model
    location = task.resolve(spec.source, recipe.file.parent)
    source_key = (
        hash_files(Path(location)) if Path(location).exists() else f"{location}@{spec.revision}"
    )
    labels = data.label_names if data.labelled else None
    key = hash_json(
        {"source": source_key, "labels": labels, "seed": recipe.doc.seed, "version": __version__}
    )
    folder = out / INPUT_STEP
    if not dist.is_main():
        return _written_by_main(folder, key, "input")
    cached = _reuse(folder, key, "input")
    if cached is not None:
        print(f"model: {spec.source} (reused {folder})")
        return cached
    print(f"model: {spec.source} ({location})")
    started = time.time()
    seed_everything(recipe.doc.seed)  # a new head (or model) is initialised the same every run
    model, processor = task.load(location, labels, spec.revision)
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
            {"source": location},
            started,
            data,
            recipe.doc.seed,
        )
        write_json_atomic(work / MANIFEST, manifest)
    return StepResult("input", folder, artifact, manifest, reused=False)


def _written_by_main(folder: Path, key: str, name: str) -> StepResult:
    """The step rank 0 just wrote, as another rank sees it (it must share the folder)."""
    result = _reuse(folder, key, name)
    if result is None:
        raise OutputError(
            f"{folder}: process {dist.rank()} cannot read the step the main process wrote; "
            "the run folder (--out) must be on a filesystem every node shares"
        )
    return result


def _run_step(
    recipe: Recipe, step: PassStep, parent: StepResult, data: Dataset, out: Path, progress: bool
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
    key = hash_json(inputs)
    folder = out / step.folder
    cached = _reuse(folder, key, step.name)
    alone = step.info.after_report or dist.world_size() == 1
    # every rank must take the same branch: reuse only when all of them can
    if (cached is not None) if alone else dist.all_ok(cached is not None):
        assert cached is not None
        print(f"  reused {folder} (same input, config and data)")
        return cached
    main = dist.is_main()
    what = f"running {step.name} ({folder})"
    if alone:
        result = _execute(recipe, step, parent, data, out, progress, key, folder)
    elif step.info.data_parallel:
        with dist.together(what):
            if main:
                result = _execute(recipe, step, parent, data, out, progress, key, folder)
            else:
                with tempfile.TemporaryDirectory(prefix=f"compress-rank{dist.rank()}-") as tmp:
                    private = Path(tmp) / step.folder
                    _execute(recipe, step, parent, data, out, False, key, private)
        with dist.main_first(f"reading {folder}"):
            if not main:
                result = _written_by_main(folder, key, step.name)
    else:
        with dist.main_first(what):
            if main:
                result = _execute(recipe, step, parent, data, out, progress, key, folder)
            else:
                result = _written_by_main(folder, key, step.name)
    if main:
        print(f"  done in {result.manifest['seconds']:.0f} s -> {folder}")
    return result


def _execute(
    recipe: Recipe,
    step: PassStep,
    parent: StepResult,
    data: Dataset,
    out: Path,
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
            task=get_task(recipe.doc.task),
            run_dir=out,
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
        write_json_atomic(work / MANIFEST, manifest)
    return StepResult(step.name, folder, artifact, manifest, reused=False)
