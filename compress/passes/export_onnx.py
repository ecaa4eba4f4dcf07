"""`export_onnx`: export to ONNX (dynamic batch and sequence axes) and prove parity.

Writes `model.onnx` (portable: plain ONNX operators, what TensorRT parses) and,
with `optimize`, `model_ort.onnx`: ONNX Runtime's transformer fusions
(attention, layer norm, GELU), the fastest graph for ONNX Runtime on CPU. The
task exports (`Task.export_onnx`, `Task.fuse_onnx`): a classifier's logits, a
sentence embedder's pooled and normalized vector, an image model's logits.
Each file is compared with the PyTorch model on real inputs; a difference
above `atol` fails the pass with the max difference.
"""

from __future__ import annotations

import warnings

from pydantic import Field

from compress.artifacts import Artifact, Variant
from compress.passes.base import PassConfig, PassContext, PassInfo, Variants
from compress.passkit.io import load_input
from compress.quant.parity import check_parity
from compress.tasks import Task


class ExportOnnxConfig(PassConfig):
    """Options of `export_onnx`."""

    opset: int = Field(18, ge=14, le=21, description="ONNX opset")
    atol: float = Field(1e-4, gt=0, description="max |logit difference| allowed vs PyTorch")
    optimize: bool = Field(
        True, description="also write model_ort.onnx with ONNX Runtime transformer fusions"
    )


def apply(artifact: Artifact, cfg: ExportOnnxConfig, ctx: PassContext) -> Artifact:
    own = ctx.own_implementation("export_onnx")
    if own is not None:  # e.g. decoder LMs: the KV cache as inputs and outputs
        result: Artifact = own(artifact, cfg, ctx)
        _keep_tied(result, ctx)
        return result
    model, processor = load_input(artifact, ctx)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings; parity is checked below instead
        portable = ctx.task.export_onnx(model, processor, artifact.path, ctx.work_dir, cfg.opset)
    batches = ctx.task.parity_batches(processor, ctx.data.validation.inputs, ctx.max_length)
    diff = check_parity("ONNX export", model, portable, batches, cfg.atol)
    ctx.log(f"{portable.name} matches PyTorch: max |output diff| {diff:.2e} (atol {cfg.atol:g})")
    ctx.metrics["parity"] = {portable.name: diff}
    variants = [Variant("fp32", "onnxruntime", "fp32", "portable", portable.name)]
    if cfg.optimize and ctx.task.fused_onnx:
        target = ctx.work_dir / "model_ort.onnx"
        fused = ctx.task.fuse_onnx(portable, target, model)
        diff = check_parity("ONNX Runtime-optimized export", model, target, batches, cfg.atol)
        ctx.log(f"{target.name} matches PyTorch: max |output diff| {diff:.2e}; fused {fused}")
        ctx.metrics["parity"][target.name] = diff
        ctx.metrics["fused_operators"] = fused
        variants.append(Variant("fp32-ort", "onnxruntime", "fp32", "cpu", target.name))
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, {**artifact.meta, "opset": cfg.opset})


def _keep_tied(result: Artifact, ctx: PassContext) -> None:
    """One copy of a tied embedding in each ONNX file: an LM head that reads a transposed
    duplicate of it reads `Transpose(embedding)` instead (exact, so parity stands)."""
    from compress.llm.tied import tie_file

    removed = {}
    for variant in result.variants:
        file = result.file(variant)
        if file.suffix == ".onnx" and file.is_file():
            saved = tie_file(file)
            if saved:
                removed[file.name] = saved
                ctx.log(
                    f"{file.name}: the LM head reads the tied embedding "
                    f"({saved / 1e6:.1f} MB duplicate removed)"
                )
    if removed:
        ctx.metrics["tied_duplicate_bytes_removed"] = removed


def _outputs(cfg: ExportOnnxConfig, task: Task) -> Variants:
    # images: no fusion pass (ONNX Runtime fuses Conv+BN itself at load)
    fused = cfg.optimize and task.fused_onnx
    return (("fp32", "portable"),) + ((("fp32", "cpu"),) if fused else ())


PASS = PassInfo(
    name="export_onnx",
    summary="Export to ONNX with dynamic axes, ONNX Runtime fusions, and a parity check.",
    config=ExportOnnxConfig,
    apply=apply,
    consumes="hf",
    produces="onnx",
    outputs=_outputs,
)
