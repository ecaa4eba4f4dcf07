"""`export_onnx`: export to ONNX (dynamic batch and sequence axes) and prove parity.

Writes `model.onnx` (portable: plain ONNX operators, what TensorRT parses) and,
with `optimize`, `model_ort.onnx`: ONNX Runtime's transformer fusions
(attention, layer norm, GELU), the fastest graph for ONNX Runtime on CPU.
Each file is compared with the PyTorch model on real inputs; a difference
above `atol` fails the pass with the max difference.
"""

from __future__ import annotations

import warnings

from pydantic import Field

from compress.artifacts import Artifact, Variant, copy_preprocessing
from compress.passes.base import PassConfig, PassContext, PassInfo, Variants
from compress.passes.common import load_input
from compress.quant.parity import check_parity


class ExportOnnxConfig(PassConfig):
    """Options of `export_onnx`."""

    opset: int = Field(18, ge=14, le=21, description="ONNX opset")
    atol: float = Field(1e-4, gt=0, description="max |logit difference| allowed vs PyTorch")
    optimize: bool = Field(
        True, description="also write model_ort.onnx with ONNX Runtime transformer fusions"
    )


def apply(artifact: Artifact, cfg: ExportOnnxConfig, ctx: PassContext) -> Artifact:
    if ctx.task.name == "text-generation":
        return _export_lm(artifact, cfg, ctx)
    if ctx.task.input_kind == "images":
        return _export_image_model(artifact, cfg, ctx)
    return _export_transformer(artifact, cfg, ctx)


def _export_image_model(artifact: Artifact, cfg: ExportOnnxConfig, ctx: PassContext) -> Artifact:
    """`model.onnx` with a dynamic batch axis, from torch.onnx's exporter."""
    import torch

    from compress.vision.pruning import example_input

    model, processor = load_input(artifact, ctx)
    model.eval()
    portable = ctx.work_dir / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example_input(processor),),
            str(portable),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch_size"}, "logits": {0: "batch_size"}},
            opset_version=cfg.opset,
            dynamo=False,
        )
    copy_preprocessing(artifact.path, ctx.work_dir)
    batches = ctx.task.parity_batches(processor, ctx.data.validation.inputs, ctx.max_length)
    diff = check_parity("ONNX export", model, portable, batches, cfg.atol)
    ctx.log(f"model.onnx matches PyTorch: max |logit diff| {diff:.2e} (atol {cfg.atol:g})")
    ctx.metrics["parity"] = {"model.onnx": diff}
    # ONNX Runtime fuses Conv+BN+activation itself at load time: one graph serves both targets
    variants = [Variant("fp32", "onnxruntime", "fp32", "portable", "model.onnx")]
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, {**artifact.meta, "opset": cfg.opset})


def _export_transformer(artifact: Artifact, cfg: ExportOnnxConfig, ctx: PassContext) -> Artifact:
    from optimum.exporters.onnx import onnx_export_from_model

    model, tokenizer = load_input(artifact, ctx)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings; parity is checked below instead
        onnx_export_from_model(
            model,
            ctx.work_dir,
            opset=cfg.opset,
            task="text-classification",
            do_validation=False,
            preprocessors=[tokenizer],
        )
    portable = ctx.work_dir / "model.onnx"
    batches = ctx.task.parity_batches(tokenizer, ctx.data.validation.inputs, ctx.max_length)
    diff = check_parity("ONNX export", model, portable, batches, cfg.atol)
    ctx.log(f"model.onnx matches PyTorch: max |logit diff| {diff:.2e} (atol {cfg.atol:g})")
    ctx.metrics["parity"] = {"model.onnx": diff}
    variants = [Variant("fp32", "onnxruntime", "fp32", "portable", "model.onnx")]
    if cfg.optimize:
        from onnxruntime.transformers.optimizer import optimize_model

        config = model.config
        uniform = not getattr(config, "pruned_heads", None)  # else let ORT read each layer's
        optimized = optimize_model(
            str(portable),
            model_type="bert",
            num_heads=config.num_attention_heads if uniform else 0,
            hidden_size=config.hidden_size if uniform else 0,
        )
        target = ctx.work_dir / "model_ort.onnx"
        optimized.save_model_to_file(str(target))
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        diff = check_parity("ONNX Runtime-optimized export", model, target, batches, cfg.atol)
        ctx.log(f"model_ort.onnx matches PyTorch: max |logit diff| {diff:.2e}; fused {fused}")
        ctx.metrics["parity"]["model_ort.onnx"] = diff
        ctx.metrics["fused_operators"] = fused
        variants.append(Variant("fp32-ort", "onnxruntime", "fp32", "cpu", "model_ort.onnx"))
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, {**artifact.meta, "opset": cfg.opset})


def _export_lm(artifact: Artifact, cfg: ExportOnnxConfig, ctx: PassContext) -> Artifact:
    """`model.onnx` with the KV cache as inputs and outputs, checked with and without past."""
    from compress.llm.export import export_with_past, fuse_decoder, lm_parity

    model, tokenizer = load_input(artifact, ctx)
    portable = export_with_past(model, tokenizer, ctx.work_dir, cfg.opset)
    texts = ctx.data.validation.texts[:8]
    sequences = tokenizer(texts, truncation=True, max_length=ctx.max_length)["input_ids"]
    variants = [Variant("fp32", "onnxruntime", "fp32", "portable", "model.onnx")]
    files = [portable]
    if cfg.optimize:
        fused, skipped = fuse_decoder(portable, ctx.work_dir / "model_ort.onnx", model.config)
        ctx.log(f"model_ort.onnx: ONNX Runtime decoder fusions {fused}")
        if skipped:
            ctx.log(f"model_ort.onnx keeps optimum's attention graph: {skipped}")
        ctx.metrics["fused_operators"] = fused
        variants.append(Variant("fp32-ort", "onnxruntime", "fp32", "cpu", "model_ort.onnx"))
        files.append(ctx.work_dir / "model_ort.onnx")
    ctx.metrics["parity"], ctx.metrics["parity_detail"] = {}, {}
    for file in files:
        diffs = lm_parity(model, file, sequences, cfg.atol)
        shown = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        ctx.log(f"{file.name} matches PyTorch: max |logit diff| {shown} (atol {cfg.atol:g})")
        ctx.metrics["parity"][file.name] = max(diffs.values())
        ctx.metrics["parity_detail"][file.name] = diffs
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, {**artifact.meta, "opset": cfg.opset})


def _outputs(cfg: ExportOnnxConfig, task: str) -> Variants:
    from compress.tasks import get_task

    # images: no fusion pass (ONNX Runtime fuses Conv+BN itself at load)
    fused = cfg.optimize and get_task(task).input_kind == "texts"
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
