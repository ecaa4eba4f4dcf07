"""`tensorrt`: build a TensorRT engine from the ONNX model before it.

Which file is built depends on `precision`: `int8` builds the symmetric Q/DQ
file `quantize` wrote for the `tensorrt` target (explicit quantization; no
calibrator is ever used), `int4` the weight-only INT4 file of a decoder
(`quantize.weight_only.targets: [tensorrt]`: blocked INT4 DequantizeLinear ->
MatMul), `fp32` and `fp16` build the portable FP32 file of `export_onnx`.
With full TensorRT, `fp16` sets the builder's FP16 flag (`int4` too, for the
activations); TensorRT-RTX has no such flag (its networks are strongly
typed), so the model is converted to FP16 first and that graph is built. A
decoder's engine profile covers its prompt (an empty KV cache, up to the
longest sequence) and its decode steps (one token after a cache up to that
length).

The engine, its build log and what the build recorded (network layers, build
time, backend version, compute capabilities) land in the step folder, with the
tokenizer. Engines are cached across runs (see `compress.trt.cache`). An engine
runs only on an NVIDIA GPU: the report lists it as built, not run, on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from compress.artifacts import Artifact, Variant, copy_preprocessing, hash_json, link_artifact_files
from compress.errors import PassFailed, UserError
from compress.passes.base import PassConfig, PassContext, PassInfo, Requirement, Variants
from compress.tasks import Task
from compress.trt.options import EngineShapes

ComputeCapability = Literal["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]
DEFAULT_RTX_TARGETS: tuple[ComputeCapability, ...] = ("8.0", "8.6", "8.9", "12.0", "12.1")


class TensorRTConfig(PassConfig, EngineShapes):
    """Options of `tensorrt`."""

    backend: Literal["auto", "tensorrt", "tensorrt_rtx"] = Field(
        "auto", description="auto: full TensorRT if importable, else TensorRT-RTX"
    )
    precision: Literal["fp32", "fp16", "int8", "int4"] = Field(
        "int8",
        description="int8 builds quantize's TensorRT Q/DQ file; int4 a decoder's weight-only "
        "INT4 file for TensorRT; fp32/fp16 the export",
    )
    workspace_mb: int = Field(1024, ge=16, le=1 << 20, description="builder workspace limit")
    sparsity: bool = Field(False, description="allow 2:4 structured-sparse weight kernels")
    compute_capability: list[ComputeCapability] | None = Field(
        None,
        min_length=1,
        description="TensorRT-RTX targets; default 8.0 8.6 8.9 12.0 12.1",
    )
    timing_cache: str | None = Field(
        None, description="timing cache file (full TensorRT); default: in cache_dir"
    )
    cache_dir: str | None = Field(
        None, description="engine cache; default ~/.cache/compress/engines"
    )
    if_missing: Literal["error", "skip"] = Field(
        "error",
        description="no TensorRT here: error (at validation), or skip: the step passes its "
        "input on and records why",
    )

    @field_validator("compute_capability", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # YAML reads `[8.6, 12.0]` as floats
        if isinstance(value, list):
            return [str(v) if isinstance(v, float) else v for v in value]
        return value

    @model_validator(mode="after")
    def _capability_for_rtx(self) -> TensorRTConfig:
        if self.backend == "tensorrt" and self.compute_capability is not None:
            raise ValueError(
                "compute_capability is for backend tensorrt_rtx; full TensorRT builds "
                "for the GPU it runs on"
            )
        return self


def _requires(cfg: TensorRTConfig) -> tuple[Requirement, ...]:
    from compress.trt.cache import BACKEND_MODULES, INSTALL_HINT

    if cfg.if_missing == "skip":
        return ()  # checked when the step runs, which then skips with one line
    if cfg.backend == "auto":
        return ((tuple(BACKEND_MODULES.values()), INSTALL_HINT),)
    return ((BACKEND_MODULES[cfg.backend], INSTALL_HINT),)


def _check_input(cfg: TensorRTConfig, handed: Variants) -> str | None:
    """int8 needs a TensorRT Q/DQ INT8 file, int4 a weight-only INT4 file for TensorRT;
    fp32/fp16 the portable FP32 export."""
    if cfg.precision == "int4":
        if ("int4", "tensorrt") in handed:
            return None
        return (
            "precision int4 builds the weight-only INT4 file for TensorRT that the pass right "
            "before it writes, and it writes none (quantize with weight_only: {targets: "
            "[cpu, tensorrt]} does)"
        )
    if cfg.precision == "int8":
        if ("int8", "tensorrt") in handed:
            return None
        return (
            "precision int8 builds the Q/DQ file for TensorRT that the pass right before it "
            "writes, and it writes none (quantize with 'tensorrt' in its targets, or qat, does; "
            "or set precision: fp16)"
        )
    if ("fp32", "portable") in handed:
        return None
    return (
        f"precision {cfg.precision} builds the portable FP32 ONNX file that the pass right "
        "before it writes, and it writes none (export_onnx does; for INT8 use precision: int8 "
        "after quantize)"
    )


def source_variant(artifact: Artifact, precision: str) -> Variant:
    """The ONNX variant an engine of `precision` is built from."""
    quantized = precision in ("int8", "int4")
    for v in artifact.variants:
        if quantized and v.precision == precision and v.target == "tensorrt":
            return v
        if not quantized and v.precision == "fp32" and v.target == "portable":
            return v
    wanted = {"int8": "TensorRT Q/DQ INT8", "int4": "TensorRT weight-only INT4"}.get(
        precision, "portable FP32"
    )
    raise UserError(
        f"{artifact.path} has no {wanted} ONNX file to build a {precision} engine from "
        f"(has {[v.name for v in artifact.variants]})"
    )


def apply(artifact: Artifact, cfg: TensorRTConfig, ctx: PassContext) -> Artifact:
    from compress.trt.builder import BACKEND_NAMES, BuildOptions
    from compress.trt.cache import build_engine, default_cache_dir, import_backend, resolve_backend

    variant = source_variant(artifact, cfg.precision)
    try:
        backend = resolve_backend(cfg.backend)
        import_backend(backend)
    except UserError as exc:
        if cfg.if_missing == "error":
            raise
        return skip(artifact, _missing_reason(cfg.backend, str(exc)), ctx)
    source = artifact.file(variant)
    capabilities: tuple[str, ...] = ()
    if backend == "tensorrt_rtx":
        capabilities = tuple(cfg.compute_capability or DEFAULT_RTX_TARGETS)
    elif cfg.compute_capability is not None:
        ctx.log("compute_capability ignored: full TensorRT builds for the GPU it runs on")
    sequence = cfg.sequence_range(ctx.max_length)
    options = BuildOptions(
        precision=cfg.precision,
        batch=cfg.batch.as_tuple(),
        sequence=sequence,
        workspace_mb=cfg.workspace_mb,
        sparsity=cfg.sparsity,
        compute_capabilities=capabilities,
    )
    cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
    timing = Path(cfg.timing_cache).expanduser() if cfg.timing_cache else None
    if backend == "tensorrt" and timing is None:
        timing = cache_dir / "timing.cache"
    name = BACKEND_NAMES[backend]
    targets = " ".join(capabilities) if capabilities else "the build GPU"
    ctx.log(
        f"{name} {cfg.precision} engine from {source.name} for SM {targets} "
        f"(batch {options.batch}, sequence {options.sequence})"
    )
    try:
        built = build_engine(source, backend, options, cache_dir, timing)
    except PassFailed as exc:
        if not ctx.skips_on_failure("tensorrt") or cfg.precision == "int4":
            raise  # the INT4 file is written for TensorRT's parser: a refusal is a failure
        # the task's table allows it (decoder LMs: INT4 MatMulNBits is not parsed): say why, go on
        return skip(artifact, str(exc), ctx, hint="build from the export_onnx step instead")
    info = built.info
    engine_file = f"model_{cfg.precision}.engine"
    shutil.copyfile(built.engine, ctx.work_dir / engine_file)
    if built.log.is_file():
        shutil.copyfile(built.log, ctx.work_dir / "build.log")
    (ctx.work_dir / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    copy_preprocessing(artifact.path, ctx.work_dir)
    how = (
        "reused from the engine cache"
        if info["cached"]
        else f"built in {info['build_seconds']:.1f} s"
    )
    ctx.log(
        f"parser accepted all {info['onnx_nodes']} nodes ({info['network_layers']} network "
        f"layers); {engine_file} {info['engine_bytes'] / 1e6:.2f} MB {how}"
    )
    ctx.metrics["tensorrt"] = {k: v for k, v in info.items() if k != "options"}
    note = f"{name} {info['backend_version']} engine for SM {targets}; needs an NVIDIA GPU to run"
    engine = Variant(
        f"{cfg.precision}-engine", "tensorrt", cfg.precision, "tensorrt", engine_file, note
    )
    meta = {
        **artifact.meta,
        "engine_source": variant.file,
        "engine_source_step": artifact.path.name,
        "tensorrt": ctx.metrics["tensorrt"],
    }
    return Artifact("engine", ctx.work_dir, ctx.key, [engine], meta)


SKIP_HINT = "pip install tensorrt-rtx-cu13==1.7.1.116 or use JetPack's tensorrt"


def _missing_reason(requested: str, error: str) -> str:
    if "cannot be loaded" in error:
        return error.split(": pip install", 1)[0]
    if requested == "auto":
        return "no TensorRT backend installed"
    return f"backend '{requested}' is not installed"


def skip(artifact: Artifact, reason: str, ctx: PassContext, hint: str = SKIP_HINT) -> Artifact:
    """Pass `artifact` on unchanged (its files linked into the step folder), saying why.

    The manifest's metrics hold `skipped: reason`; the report lists the step as
    skipped instead of measuring its files again, and a later run tries again
    (the backend may have been installed since).
    """
    ctx.log(f"tensorrt: skipped — {reason}; {hint}")
    ctx.metrics["skipped"] = reason
    link_artifact_files(artifact.path, ctx.work_dir)
    meta = {**artifact.meta, "skipped": reason}
    key = hash_json([ctx.key, "skipped", artifact.key])
    return Artifact(artifact.kind, ctx.work_dir, key, list(artifact.variants), meta)


def _outputs(cfg: TensorRTConfig, task: Task) -> Variants:
    return ((cfg.precision, "tensorrt"),)


PASS = PassInfo(
    name="tensorrt",
    summary="Build a TensorRT / TensorRT-RTX engine from the ONNX model (FP32, FP16, INT8 Q/DQ, "
    "weight-only INT4).",
    config=TensorRTConfig,
    apply=apply,
    consumes="onnx",
    produces="engine",
    requires_for=_requires,
    check_input=_check_input,
    outputs=_outputs,
)
