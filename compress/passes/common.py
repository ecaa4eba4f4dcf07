"""Helpers the passes share: loading their input, saving their output, scoring their files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.artifacts import Artifact, Variant

if TYPE_CHECKING:
    from compress.passes.base import PassContext


def load_input(artifact: Artifact, ctx: PassContext) -> tuple[Any, Any]:
    """Load a model artifact (and its tokenizer or image preprocessor) for the dataset's labels."""
    return ctx.task.load(str(artifact.path), ctx.data.label_names)


def save_output(model: Any, processor: Any, ctx: PassContext) -> Artifact:
    """Save to the pass's folder and describe the result as a model artifact."""
    ctx.task.save(model, processor, ctx.work_dir)
    variant = Variant("fp32", runtime="torch", precision="fp32", target="portable")
    meta = ctx.task.model_meta(model, processor, ctx.max_length)
    return Artifact("hf", ctx.work_dir, ctx.key, [variant], meta)


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
