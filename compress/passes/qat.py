"""`qat`: quantization-aware training with NNCF, exported as TensorRT-ready INT8 Q/DQ.

Takes the PyTorch model (not an ONNX file: training needs the weights), so it
stands where `export_onnx` + `quantize` would, and hands the next pass an ONNX
artifact. Steps:

1. insert symmetric INT8 fake quantizers (per-channel weights, zero points 0)
   with NNCF, calibrated on training rows: this is static PTQ in PyTorch;
2. train the fake-quant model for `epochs`, by default distilling from the
   FP32 input model (its logits, computed once), so weights and quantizer
   scales adapt to INT8 rounding;
3. strip NNCF's quantizers to torch fake-quant ops, export with the
   TorchScript exporter, fold weight quantizers into int8 initializers, and
   check the file against the fake-quant PyTorch model (`atol`, its Q/DQ
   graph executed exactly, so the check does not depend on the CPU's INT8
   kernels; how far those move the logits is recorded beside it) and
   against TensorRT's Q/DQ rules (`check_qdq`).

Why a pass of its own and not `quantize mode: qat`: `quantize` consumes ONNX
and QAT consumes PyTorch weights; one pass per artifact kind keeps the recipe
order checks honest.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from compress.artifacts import Artifact, Variant, copy_preprocessing
from compress.errors import PassFailed
from compress.passes.base import PassContext, PassInfo, RegexList, Variants
from compress.passkit.calibration import CalibrationConfig, calibration_feeds
from compress.passkit.training import TrainConfig, default_device, train
from compress.quant.nncf_backend import INSTALL_HINT
from compress.tasks import Task

OUTPUT = "model_int8_qdq.onnx"


class QatConfig(TrainConfig, CalibrationConfig):
    """Options of `qat`."""

    epochs: float = Field(1.0, gt=0, le=100, description="passes over the training data")
    lr: float = Field(2e-5, gt=0, lt=1, description="peak learning rate (AdamW)")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps spent warming up")
    distill: bool = Field(True, description="learn from the FP32 model's logits (else labels only)")
    temperature: float = Field(2.0, gt=0, le=100, description="softmax temperature T")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term")
    keep_float: RegexList = Field(
        [".*embeddings.*"],
        description="regexes of NNCF layer names left unquantized (TensorRT quantizes "
        "MatMul/Gemm/Conv inputs; embedding lookups stay float)",
    )
    opset: int = Field(18, ge=14, le=21, description="ONNX opset of the exported file")
    # The file is checked as a graph (Q/DQ executed exactly, the same on every CPU): on the
    # real MiniLM student it matched the fake-quant model to 0.010-0.028 in logits, while a
    # wrong graph (inputs swapped) moved them by 0.37-0.77. The CPU's INT8 kernels, which
    # differ between AVX2 and AVX-512 VNNI, are measured beside it and never fail the pass.
    atol: float = Field(
        0.1,
        gt=0,
        description="max |logit difference| allowed vs the fake-quant PyTorch model, with the "
        "Q/DQ graph executed exactly",
    )


def _dynamic_axes(example: dict[str, Any], text: bool, output: str) -> dict[str, dict[int, str]]:
    axes: dict[int, str] = {0: "batch_size", 1: "sequence_length"} if text else {0: "batch_size"}
    return {**{name: dict(axes) for name in example}, output: {0: "batch_size"}}


def apply(artifact: Artifact, cfg: QatConfig, ctx: PassContext) -> Artifact:
    import torch

    from compress.passkit.io import load_input
    from compress.quant.nncf_backend import export_qat, force_signed, prepare_qat
    from compress.quant.parity import check_parity, kernel_deviation
    from compress.quant.qdq_check import check_qdq
    from compress.system import cpu_features, cpu_model

    model, processor = load_input(artifact, ctx)
    model.eval().to(default_device())
    text = ctx.task.input_kind == "texts"
    val = ctx.data.validation
    objective = ctx.objective
    metric = objective.metric
    validate = objective.validator(model, processor, ctx)  # against the FP32 input model
    ctx.metrics[f"fp32_validation_{metric}"] = validate(model)[0]
    reference = (
        objective.targets(model, processor, val, ctx, "fp32 validation")
        if objective.scores_against_float
        else None
    )
    if cfg.distill:
        teacher = objective.targets(model, processor, ctx.data.train, ctx, "teacher")
        loss_fn = objective.distillation_loss(teacher, cfg.temperature, cfg.alpha)
    else:
        loss_fn = objective.supervised_loss()

    feeds = calibration_feeds(ctx, processor, cfg.calibration_samples)
    batches = [{k: torch.from_numpy(v) for k, v in feed.items()} for feed in feeds]
    ctx.log(f"inserting INT8 fake quantizers (NNCF), calibrated on {cfg.calibration_samples} rows")
    model = prepare_qat(model.cpu(), batches, cfg.keep_float, transformer=text)
    switched = force_signed(model)
    if switched:
        ctx.log(f"{switched} unsigned activation quantizers (after ReLU) made int8 for TensorRT")
    ctx.metrics["signed_quantizers_forced"] = switched
    ptq = validate(model)[0]
    ctx.metrics[f"calibrated_validation_{metric}"] = ptq
    ctx.log(f"fake-quant model before training: validation {metric} {ptq:.4f}")
    ctx.metrics.update(train(model, processor, cfg, ctx, loss_fn, "qat", validate=validate))
    model.cpu().eval()

    out = ctx.work_dir / OUTPUT
    example = batches[0]
    output = ctx.task.export_outputs[0]
    axes = _dynamic_axes(example, text, output)
    stripped, folded = export_qat(model, example, out, axes, cfg.opset, output)
    ctx.metrics["export"] = folded
    checks = ctx.task.parity_batches(processor, val.inputs, ctx.max_length)
    diff = check_parity("QAT INT8 export", stripped, out, checks, cfg.atol, exact=True)
    kernels = kernel_deviation(out, checks)
    ctx.log(
        f"{OUTPUT} matches the fake-quant model: max |logit diff| {diff:.2e} executed exactly; "
        f"this CPU's INT8 kernels move logits by up to {kernels['max_logit_diff']:.3f} "
        f"(argmax agreement {kernels['argmax_agreement']:.1%})"
    )
    ctx.metrics["parity"] = {OUTPUT: diff}
    ctx.metrics["int8_kernels"] = {**kernels, "cpu": cpu_model(), "cpu_features": cpu_features()}
    form = check_qdq(out)
    if not form.ok:
        raise PassFailed(f"{OUTPUT} is not TensorRT-ready Q/DQ: {'; '.join(form.problems[:3])}")
    ctx.metrics["tensorrt_qdq"] = {
        "quantize_nodes": form.quantize_nodes,
        "dequantize_nodes": form.dequantize_nodes,
        "per_channel_weights": form.per_channel_weights,
    }
    copy_preprocessing(artifact.path, ctx.work_dir)
    score = objective.score_file(ctx, processor, out, True, reference)
    ctx.metrics[f"validation_{metric}"] = {OUTPUT: score}
    variants = [Variant("int8-qat-qdq", "onnxruntime", "int8", "tensorrt", OUTPUT)]
    meta = {**artifact.meta, "opset": cfg.opset}
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, meta)


def _outputs(cfg: QatConfig, task: Task) -> Variants:
    return (("int8", "tensorrt"),)


PASS = PassInfo(
    name="qat",
    summary="Quantization-aware training (NNCF), exported as TensorRT-ready INT8 Q/DQ ONNX.",
    config=QatConfig,
    apply=apply,
    consumes="hf",
    produces="onnx",
    requires=(("nncf", INSTALL_HINT), ("torchao", INSTALL_HINT)),
    outputs=_outputs,
    data_parallel=True,
)
