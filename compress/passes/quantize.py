"""`quantize`: post-training INT8 quantization of an ONNX model (ONNX Runtime or NNCF).

One INT8 format does not serve every target, so the pass writes one file per
target:

- `cpu`: `model_int8_cpu.onnx` for ONNX Runtime on CPUs. `cpu_mode: dynamic`
  (default; weights INT8, activations quantized on the fly, the fastest on
  x86 with VNNI) or `static` (calibrated QDQ, U8 activations / S8 weights).
  Dynamic INT8 is built from the export's `cpu` graph (ONNX Runtime fusions)
  when there is one; static INT8 from the portable graph. On x86 CPUs with
  AVX2 but no VNNI, ONNX Runtime's U8S8 kernels add pairs of products in 16
  bits and can saturate; `reduce_range` (7-bit weights) avoids it. Its
  default, `auto`, turns it on where the building CPU is such a CPU: build on
  the kind of CPU the file will run on, or set it to true for files that must
  run on both kinds.
- `tensorrt`: `model_int8_qdq.onnx`, symmetric S8S8 Q/DQ with per-channel
  weights and zero points 0, on MatMul/Gemm/Conv only and with float biases: the
  explicit-quantization form NVIDIA's ONNX parser accepts. Built from the
  portable graph and calibrated on training data.

`backend: nncf` calibrates the Q/DQ files with NNCF instead (with fast bias
correction and, for transformers, optional SmoothQuant); dynamic INT8 exists
only in ONNX Runtime. `max_accuracy_drop` bounds the validation accuracy lost
against the FP32 file: past it, the layers with the largest quantization error
stay float until the drop is within budget; `float_size_budget` instead picks,
per layer, INT8 or float under a size budget from the measured per-layer
error (see `compress.quant.sensitivity`).
The top layers by quantization error are recorded for every Q/DQ file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from compress.artifacts import Artifact, Variant, copy_preprocessing
from compress.benchmark.runtimes import scored_exactly
from compress.errors import PassFailed
from compress.llm.options import WeightOnlyConfig
from compress.passes.base import PassContext, PassInfo, RegexList, Requirement, Variants
from compress.passkit.calibration import CalibrationConfig, calibration_feeds
from compress.passkit.float_layers import AccuracyBudget, mixed_precision
from compress.quant.nncf_backend import INSTALL_HINT
from compress.quant.ort_quantize import CalibrationReader, Method, input_names, matching_nodes
from compress.quant.sensitivity import layer_errors
from compress.tasks import Task

QuantizeTarget = Literal["cpu", "tensorrt"]
"""What an INT8 file is for: ONNX Runtime on CPUs, or TensorRT's explicit quantization."""


class QuantizeConfig(CalibrationConfig):
    """Options of `quantize`."""

    targets: list[QuantizeTarget] = Field(
        ["cpu", "tensorrt"], min_length=1, description="one INT8 file per target"
    )
    cpu_mode: Literal["dynamic", "static"] = Field("dynamic", description="INT8 kind for cpu")
    method: Method = Field("minmax", description="calibration method for static INT8")
    percentile: float = Field(99.999, gt=90, le=100, description="for method: percentile")
    per_channel: bool = Field(True, description="per-output-channel weight scales")
    reduce_range: bool | Literal["auto"] = Field(
        "auto",
        description="cpu: 7-bit weights, so that x86 CPUs without VNNI (AVX2 only) cannot "
        "saturate their INT8 sums; auto: on where the building CPU is such a CPU",
    )
    exclude: RegexList = Field(
        [], description="regexes of ONNX node names kept in float (e.g. '.*classifier.*')"
    )
    backend: Literal["ort", "nncf"] = Field(
        "ort", description="who calibrates the Q/DQ files: ONNX Runtime or NNCF"
    )
    fast_bias_correction: bool = Field(
        True, description="backend nncf: correct the bias shift INT8 weights cause"
    )
    smooth_quant_alpha: float | None = Field(
        None, gt=0, lt=1, description="backend nncf: SmoothQuant alpha for MatMuls (None: off)"
    )
    max_accuracy_drop: float | None = Field(
        None,
        ge=0,
        le=100,
        description="validation accuracy points an INT8 file may lose vs the FP32 file; past "
        "it the most error-prone layers stay float",
    )
    max_float_layers: int = Field(
        8, ge=1, le=1000, description="at most this many layers kept float by max_accuracy_drop"
    )
    float_size_budget: float | None = Field(
        None,
        gt=0,
        le=3,
        description="Q/DQ files: keep in float the layers whose measured INT8 error is largest "
        "per byte, while the file grows at most this share over all-INT8 (0.1: +10%)",
    )
    top_k_errors: int = Field(
        10, ge=0, le=1000, description="layers with the largest quantization error to record"
    )
    weight_only: WeightOnlyConfig | None = Field(
        None,
        description="text-generation: weight-only INT4/INT8 of the MatMuls and the embedding "
        "(targets: cpu, ONNX Runtime MatMulNBits; tensorrt, blocked INT4 DequantizeLinear "
        "-> MatMul); default there: cpu, 4-bit layers, 8-bit head",
    )

    @field_validator("targets")
    @classmethod
    def _unique(cls, value: list[QuantizeTarget]) -> list[QuantizeTarget]:
        if len(set(value)) != len(value):
            raise ValueError("targets must not repeat")
        return value

    @model_validator(mode="after")
    def _backend_options(self) -> QuantizeConfig:
        if self.backend == "nncf" and "cpu" in self.targets and self.cpu_mode == "dynamic":
            raise ValueError(
                "backend nncf writes calibrated Q/DQ only: set cpu_mode: static, "
                "or targets: [tensorrt]"
            )
        if self.backend == "nncf" and self.reduce_range is True:
            raise ValueError("reduce_range is an ONNX Runtime option: use backend: ort")
        if self.backend == "ort" and self.smooth_quant_alpha is not None:
            raise ValueError("smooth_quant_alpha needs backend: nncf")
        if self.float_size_budget is not None and self.max_accuracy_drop is not None:
            raise ValueError("choose float layers by float_size_budget or max_accuracy_drop")
        if self.backend == "nncf" and self.method != "minmax":
            raise ValueError("backend nncf calibrates with its own min-max; remove method")
        return self


def _static(
    source: Path,
    target: Path,
    cfg: QuantizeConfig,
    reader: CalibrationReader,
    tensorrt: bool,
    keep_float: list[str],
    transformer: bool,
    reduce_range: bool = False,
) -> None:
    """Calibrated Q/DQ INT8 of `source` (symmetric S8S8 for TensorRT), `keep_float` nodes float."""
    excluded = sorted({*matching_nodes(source, cfg.exclude), *keep_float})
    if cfg.backend == "nncf":
        from compress.quant.nncf_backend import quantize_onnx

        quantize_onnx(
            source,
            target,
            reader.batches,
            symmetric=tensorrt,
            transformer=transformer,
            fast_bias_correction=cfg.fast_bias_correction,
            smooth_quant_alpha=cfg.smooth_quant_alpha,
            keep_float=excluded,
        )
        return
    from compress.quant.ort_quantize import static_qdq

    static_qdq(
        source,
        target,
        reader,
        method=cfg.method,
        percentile=cfg.percentile,
        per_channel=cfg.per_channel,
        tensorrt=tensorrt,
        excluded=excluded,
        reduce_range=reduce_range,
    )


def _reduce_range(cfg: QuantizeConfig, ctx: PassContext) -> bool:
    """`reduce_range` resolved for this machine, and recorded in the manifest with why."""
    from compress.system import int8_saturates

    if cfg.reduce_range != "auto":
        value, why = cfg.reduce_range, "set in the recipe"
    else:
        value = int8_saturates()
        why = (
            "auto: this CPU has AVX2 without VNNI, whose U8S8 INT8 kernels can saturate"
            if value
            else "auto: this CPU's INT8 kernels do not saturate (VNNI, or not x86 AVX2)"
        )
    ctx.log(f"cpu INT8 weights: {'7' if value else '8'} bits ({why})")
    ctx.metrics["reduce_range"] = {"value": value, "why": why}
    return value


def apply(artifact: Artifact, cfg: QuantizeConfig, ctx: PassContext) -> Artifact:
    from compress.quant.ort_quantize import quiet_root_logger

    own = ctx.own_implementation("quantize")
    if own is not None:  # e.g. decoder LMs: weight-only INT4/INT8
        result: Artifact = own(artifact, cfg, ctx)
        return result
    with quiet_root_logger():
        return _apply(artifact, cfg, ctx)


def _apply(artifact: Artifact, cfg: QuantizeConfig, ctx: PassContext) -> Artifact:
    from compress.quant.ort_quantize import dynamic_int8

    processor = ctx.task.load_processor(artifact.path)
    copy_preprocessing(artifact.path, ctx.work_dir)  # config + tokenizer beside the INT8 files
    variants: list[Variant] = []
    budget = (
        AccuracyBudget(cfg.max_accuracy_drop, cfg.max_float_layers, ctx, processor)
        if cfg.max_accuracy_drop is not None
        else None
    )
    feeds: list[Any] | None = None
    reduce = "cpu" in cfg.targets and cfg.backend == "ort" and _reduce_range(cfg, ctx)
    for target in cfg.targets:
        # Dynamic INT8 runs best on ONNX Runtime's fused graph; calibrated Q/DQ needs the
        # plain operators (ONNX Runtime fuses Q/DQ itself at load time, TensorRT parses them).
        fused = target == "cpu" and cfg.cpu_mode == "dynamic"
        source = artifact.file(artifact.for_target("cpu" if fused else "portable"))
        if fused:
            out = ctx.work_dir / "model_int8_cpu.onnx"
            ctx.log(f"INT8 dynamic for cpu from {source.name}")
            excluded = matching_nodes(source, cfg.exclude)
            dynamic_int8(
                source,
                out,
                per_channel=cfg.per_channel,
                excluded=excluded,
                reduce_range=reduce,
            )
            if budget is not None:
                budget.check_only(source, out)
            variants.append(Variant("int8-dynamic", "onnxruntime", "int8", "cpu", out.name))
            continue
        tensorrt = target == "tensorrt"
        out = ctx.work_dir / ("model_int8_qdq.onnx" if tensorrt else "model_int8_cpu.onnx")
        form = "symmetric Q/DQ for TensorRT" if tensorrt else "static Q/DQ for cpu"
        ctx.log(f"INT8 {form} from {source.name} ({cfg.backend} calibration)")
        if feeds is None:
            feeds = calibration_feeds(ctx, processor, cfg.calibration_samples)
        reader = CalibrationReader(feeds, input_names(source))
        transformer = ctx.task.input_kind == "texts"

        def build(
            keep_float: list[str],
            source: Path = source,
            out: Path = out,
            reader: CalibrationReader = reader,
            tensorrt: bool = tensorrt,
            transformer: bool = transformer,
        ) -> Path:
            _static(source, out, cfg, reader, tensorrt, keep_float, transformer, reduce)
            return out

        build([])
        ranking = layer_errors(source, out, reader.batches[:4])
        ctx.metrics.setdefault("quantization_error", {})[out.name] = [
            e.to_json() for e in ranking[: cfg.top_k_errors]
        ]
        if budget is not None:
            budget.fallback(source, out, build, [e.node for e in ranking], exact=tensorrt)
        if cfg.float_size_budget is not None:
            mixed_precision(cfg.float_size_budget, out, build, ranking, ctx)
        if tensorrt:
            _check_tensorrt_form(out, cfg, ctx)
            variants.append(Variant("int8-qdq", "onnxruntime", "int8", "tensorrt", out.name))
        else:
            variants.append(Variant("int8-static", "onnxruntime", "int8", "cpu", out.name))
    objective = ctx.objective
    reference = artifact.file(artifact.for_target("portable"))
    ctx.metrics[f"validation_{objective.metric}"] = {
        str(v.file): objective.score_file(
            ctx, processor, ctx.work_dir / str(v.file), scored_exactly(v), reference
        )
        for v in variants
    }
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, dict(artifact.meta))


def _check_tensorrt_form(out: Path, cfg: QuantizeConfig, ctx: PassContext) -> None:
    """ONNX Runtime's symmetric Q/DQ must pass check_qdq; NNCF's is checked and reported."""
    from compress.quant.qdq_check import check_qdq

    form = check_qdq(out)
    ctx.metrics["tensorrt_qdq"] = {
        "ok": form.ok,
        "quantize_nodes": form.quantize_nodes,
        "dequantize_nodes": form.dequantize_nodes,
        "per_channel_weights": form.per_channel_weights,
        "problems": form.problems[:10],
    }
    if not form.ok:
        raise PassFailed(
            f"{out.name} ({cfg.backend} backend) is not TensorRT-ready Q/DQ: "
            f"{'; '.join(form.problems[:3])}"
        )


def _requires(cfg: QuantizeConfig) -> tuple[Requirement, ...]:
    return (("nncf", INSTALL_HINT),) if cfg.backend == "nncf" else ()


def _outputs(cfg: QuantizeConfig, task: Task) -> Variants:
    return tuple(("int8", target) for target in cfg.targets)


PASS = PassInfo(
    name="quantize",
    summary="Post-training INT8 (ONNX Runtime or NNCF): CPU dynamic/static, TensorRT Q/DQ; "
    "optional accuracy budget.",
    config=QuantizeConfig,
    apply=apply,
    consumes="onnx",
    produces="onnx",
    requires_for=_requires,
    outputs=_outputs,
)
