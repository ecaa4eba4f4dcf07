"""Helpers the passes share: loading their input, saving their output, scoring their files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.artifacts import Artifact, Variant

if TYPE_CHECKING:
    from compress.deploy.bundle import Bundle
    from compress.passkit.context import PassContext


def load_input(artifact: Artifact, ctx: PassContext) -> tuple[Any, Any]:
    """Load a model artifact (and its tokenizer or image preprocessor) for the dataset's labels."""
    return ctx.task.load(str(artifact.path), ctx.data.label_names)


def save_output(model: Any, processor: Any, ctx: PassContext) -> Artifact:
    """Save to the pass's folder and describe the result as a model artifact."""
    ctx.task.save(model, processor, ctx.work_dir)
    variant = Variant("fp32", runtime="torch", precision="fp32", target="portable")
    meta = ctx.task.model_meta(model, processor, ctx.max_length)
    return Artifact("hf", ctx.work_dir, ctx.key, [variant], meta)


def labelled_batches(processor: Any, ctx: PassContext, count: int) -> list[dict[str, Any]]:
    """`count` training batches of 32 (model inputs plus `labels`), e.g. for importance scores."""
    import numpy as np
    import torch

    from compress.data.batches import bucketed_batches

    encoded = ctx.task.encode(processor, ctx.data.train.inputs, ctx.max_length)
    order = bucketed_batches(ctx.task.lengths(encoded), 32, np.random.default_rng(ctx.seed))
    labels = torch.as_tensor(ctx.data.train.labels)
    return [
        {**ctx.task.collate(processor, encoded, idx), "labels": labels[idx]}
        for idx in order[:count]
    ]


def onnx_validation_accuracy(
    ctx: PassContext,
    processor: Any,
    file: Path,
    exact: bool = False,
    log: bool = True,
) -> float:
    """Validation accuracy of an ONNX file (ONNX Runtime, CPU): a drop shows where it happens.

    `exact` runs a Q/DQ file as its graph computes (see `OrtRuntime`): how a
    file for TensorRT is scored, the same on every CPU. Dynamic INT8 files are
    scored one example at a time, as served (see `scored_one_by_one`).
    """
    from compress.benchmark.evaluate import evaluate
    from compress.benchmark.runtimes import OrtRuntime, dynamic_int8_file

    batch_size = 1 if dynamic_int8_file(file) else 64

    runtime = OrtRuntime(file, threads=0, exact=exact)
    try:
        scores = evaluate(
            runtime, processor, ctx.data.validation, ctx.max_length, batch_size, False, ctx.task
        )
    finally:
        runtime.close()
    if log:
        how = ", Q/DQ executed exactly" if exact else ""
        ctx.log(f"{file.name}: validation accuracy {scores['accuracy']:.4f}{how}")
    return scores["accuracy"]


def bundle_name(cfg: Any, ctx: PassContext) -> str:
    """The folder name of a `bundle` step's bundle: the run's name and the device."""
    from compress.errors import UserError

    if ctx.run_dir is None:
        raise UserError("bundle packages a run folder: use it in a recipe or `compress bundle`")
    return f"{ctx.run_dir.name}-{cfg.target}"


def bundle_artifact(
    made: Bundle, name: str, cfg: Any, ctx: PassContext, expected: dict[str, Any]
) -> Artifact:
    """A `bundle` step's result: the bundle's files recorded in the manifest's metrics."""
    ctx.metrics["bundle"] = {
        "folder": name,
        "tarball": made.tarball.name,
        "tarball_bytes": made.tarball.stat().st_size,
        "model": made.manifest["model"]["file"],
        "source": made.manifest["model"]["source"],
        "target": cfg.target,
        **expected,
    }
    return Artifact("bundle", ctx.work_dir, ctx.key, [], {"bundle": ctx.metrics["bundle"]})
