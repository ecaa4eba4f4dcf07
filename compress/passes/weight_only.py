"""`quantize` on text-generation: weight-only INT4/INT8 of an ONNX causal LM.

ONNX Runtime's MatMulNBits quantizer does the work (`compress.llm.int4`): the
decoder's MatMuls in blocks of `block_size` weights along the input axis, by
`algorithm` (rtn: round to nearest; hqq: half-quadratic optimisation of
scales and zero points against the weights' own error; scale_estimation
and awq: NNCF's data-aware methods, run on `calibration_samples` training
texts, `compress.llm.calibrated`), the LM head at its
own bits (round to nearest), and the token embedding, which a tied model's
lookup reads from the quantized LM head (one copy, as in PyTorch;
GatherBlockQuantized). The file runs on ONNX Runtime's CPU kernels
(`accuracy_level` 4: INT8 activations in the MatMuls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compress.artifacts import Artifact, Variant, copy_preprocessing
from compress.llm.options import WeightOnlyConfig

if TYPE_CHECKING:
    from compress.passes.base import PassContext

CLASSIFICATION_ONLY = (
    "targets", "cpu_mode", "method", "percentile", "per_channel", "reduce_range", "backend",
    "fast_bias_correction", "smooth_quant_alpha", "max_accuracy_drop", "max_float_layers",
    "float_size_budget", "top_k_errors", "exclude",
)  # fmt: skip


def check_weight_only(cfg: Any, task: str) -> None:
    """Options of `quantize` that only one of the two kinds of model can use."""
    if task != "text-generation":
        if cfg.weight_only is not None:
            raise ValueError("weight_only is for text-generation recipes; remove it")
        return
    for name in cfg.changed(CLASSIFICATION_ONLY):
        raise ValueError(
            f"{name} is an INT8 classification option; text-generation quantizes weights "
            "only: set quantize.weight_only"
        )


def quantize_lm(artifact: Artifact, wo: WeightOnlyConfig, cfg: Any, ctx: PassContext) -> Artifact:
    """`model_int{bits}.onnx` beside the tokenizer, with its validation perplexity logged."""
    from compress.llm.calibrated import calibration_sequences
    from compress.llm.genai import write_genai_config
    from compress.llm.int4 import quantize_weights
    from compress.llm.runtime import OrtLM
    from compress.llm.scores import perplexity

    # the fused graph where the export wrote one (the faster file on ONNX Runtime)
    cpu = [v for v in artifact.variants if v.target == "cpu"] or artifact.variants
    source = artifact.path / (cpu[0].file or "model.onnx")
    tokenizer = ctx.task.load_processor(artifact.path)
    copy_preprocessing(artifact.path, ctx.work_dir)
    name = f"model_int{wo.bits}.onnx"
    calibration: list[list[int]] = []
    if wo.calibrated:
        calibration = calibration_sequences(
            tokenizer, ctx.data.train.texts, wo.calibration_samples, ctx.seed, ctx.max_length
        )
        ctx.log(f"calibrating on {len(calibration)} training texts ({wo.algorithm}, awq {wo.awq})")
    summary = quantize_weights(source, ctx.work_dir / name, wo, ctx.progress, calibration)
    ctx.metrics["weight_only"] = summary
    validation = ctx.data.validation.texts[:100]
    figures = {}
    for label, file in (("fp32", source), (f"int{wo.bits}", ctx.work_dir / name)):
        lm = OrtLM(file)
        figures[label] = perplexity(lm, tokenizer, validation, ctx.max_length)["perplexity"]
        lm.close()
    ctx.metrics["validation_perplexity"] = figures
    ctx.log(
        f"{name}: validation perplexity {figures[f'int{wo.bits}']:.2f} "
        f"(fp32 file {figures['fp32']:.2f}, 100 texts)"
    )
    write_genai_config(ctx.work_dir, name)
    precision = f"int{wo.bits}"
    variants = [
        Variant(precision, "onnxruntime", precision, "cpu", name),
        Variant(
            f"{precision}-genai",
            "onnxruntime-genai",
            precision,
            "cpu",
            name,
            "the same file served by onnxruntime-genai (genai_config.json)",
        ),
    ]
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, dict(artifact.meta))
