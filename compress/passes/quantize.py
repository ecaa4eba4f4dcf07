"""`quantize`: post-training INT8 quantization of an ONNX model (ONNX Runtime).

One INT8 format does not serve every target, so the pass writes one file per
target:

- `cpu`: `model_int8_cpu.onnx` for ONNX Runtime on CPUs. `cpu_mode: dynamic`
  (default; weights INT8, activations quantized on the fly, the fastest on
  x86 with VNNI) or `static` (calibrated QDQ, U8 activations / S8 weights).
  Dynamic INT8 is built from the export's `cpu` graph (ONNX Runtime fusions)
  when there is one; static INT8 from the portable graph.
- `tensorrt`: `model_int8_qdq.onnx`, symmetric S8S8 Q/DQ with per-channel
  weights and zero points 0, on MatMul/Gemm/Conv only and with float biases: the
  explicit-quantization form NVIDIA's ONNX parser accepts. Built from the
  portable graph and calibrated on training data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from compress.artifacts import Artifact, Variant, copy_preprocessing
from compress.errors import PassFailed
from compress.passes.base import PassConfig, PassContext, PassInfo, RegexList

Target = Literal["cpu", "tensorrt"]


class QuantizeConfig(PassConfig):
    """Options of `quantize`."""

    targets: list[Target] = Field(
        ["cpu", "tensorrt"], min_length=1, description="one INT8 file per target"
    )
    cpu_mode: Literal["dynamic", "static"] = Field("dynamic", description="INT8 kind for cpu")
    method: Literal["minmax", "percentile", "entropy"] = Field(
        "minmax", description="calibration method for static INT8"
    )
    percentile: float = Field(99.999, gt=90, le=100, description="for method: percentile")
    calibration_samples: int = Field(
        256, ge=1, le=100_000, description="training rows to calibrate on"
    )
    per_channel: bool = Field(True, description="per-output-channel weight scales")
    exclude: RegexList = Field(
        [], description="regexes of ONNX node names kept in float (e.g. '.*classifier.*')"
    )

    @field_validator("targets")
    @classmethod
    def _unique(cls, value: list[Target]) -> list[Target]:
        if len(set(value)) != len(value):
            raise ValueError("targets must not repeat")
        return value


class _Reader:
    """Calibration batches of 8 real training examples at the recipe's fixed shape."""

    def __init__(self, ctx: PassContext, processor: Any, inputs: list[Any], names: list[str]):
        self.batches = []
        for i in range(0, len(inputs), 8):
            chunk = inputs[i : i + 8]
            feeds = ctx.task.fixed_batch(processor, chunk, len(chunk), ctx.max_length)
            self.batches.append({n: feeds[n] for n in names})
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


def _excluded(path: Path, patterns: list[str]) -> list[str]:
    import onnx

    if not patterns:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    regexes = [re.compile(p) for p in patterns]
    return [n.name for n in graph.node if any(r.fullmatch(n.name) for r in regexes)]


def _calibration_method(cfg: QuantizeConfig) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[cfg.method]


def _static(
    source: Path,
    target: Path,
    cfg: QuantizeConfig,
    ctx: PassContext,
    processor: Any,
    tensorrt: bool,
) -> None:
    import onnx

    names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]
    rng = np.random.default_rng(ctx.seed)
    train = ctx.data.train.inputs
    pick = rng.choice(len(train), size=min(cfg.calibration_samples, len(train)), replace=False)
    reader = _Reader(ctx, processor, [train[int(i)] for i in pick], names)
    extra: dict[str, object] = {"CalibPercentile": cfg.percentile}
    kwargs: dict[str, object] = {}
    if tensorrt:
        extra.update(ActivationSymmetric=True, WeightSymmetric=True, QuantizeBias=False)
        kwargs["op_types_to_quantize"] = ["MatMul", "Gemm", "Conv"]
    try:
        _run_quantize_static(source, target, reader, cfg, tensorrt, extra, kwargs)
    except ValueError as exc:  # histogram calibration on degenerate activations
        raise PassFailed(
            f"INT8 calibration ({cfg.method}) failed on {source.name}: {exc}; "
            "try method: minmax or more calibration_samples"
        ) from None


def _run_quantize_static(
    source: Path,
    target: Path,
    reader: _Reader,
    cfg: QuantizeConfig,
    tensorrt: bool,
    extra: dict[str, object],
    kwargs: dict[str, object],
) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(source),
        str(target),
        reader,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=cfg.per_channel,
        calibrate_method=_calibration_method(cfg),
        nodes_to_exclude=_excluded(source, cfg.exclude),
        extra_options=extra,
        **kwargs,
    )


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger; keep the run readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def apply(artifact: Artifact, cfg: QuantizeConfig, ctx: PassContext) -> Artifact:
    with _quiet_root_logger():
        return _apply(artifact, cfg, ctx)


def _apply(artifact: Artifact, cfg: QuantizeConfig, ctx: PassContext) -> Artifact:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from compress.qdq_check import check_qdq

    processor = ctx.task.load_processor(artifact.path)
    copy_preprocessing(artifact.path, ctx.work_dir)  # config + tokenizer beside the INT8 files
    variants: list[Variant] = []
    for target in cfg.targets:
        # Dynamic INT8 runs best on ONNX Runtime's fused graph; calibrated Q/DQ needs the
        # plain operators (ONNX Runtime fuses Q/DQ itself at load time, TensorRT parses them).
        fused = target == "cpu" and cfg.cpu_mode == "dynamic"
        source_variant = artifact.for_target("cpu" if fused else "portable")
        source = artifact.file(source_variant)
        if target == "cpu":
            out = ctx.work_dir / "model_int8_cpu.onnx"
            ctx.log(f"INT8 {cfg.cpu_mode} for cpu from {source.name}")
            if cfg.cpu_mode == "dynamic":
                quantize_dynamic(
                    str(source),
                    str(out),
                    weight_type=QuantType.QInt8,
                    per_channel=cfg.per_channel,
                    nodes_to_exclude=_excluded(source, cfg.exclude),
                    # fused ONNX Runtime ops defeat shape inference; their outputs are float
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
            else:
                _static(source, out, cfg, ctx, processor, tensorrt=False)
            variants.append(Variant(f"int8-{cfg.cpu_mode}", "onnxruntime", "int8", "cpu", out.name))
        else:
            out = ctx.work_dir / "model_int8_qdq.onnx"
            ctx.log(
                f"INT8 symmetric Q/DQ for TensorRT from {source.name} ({cfg.method} calibration)"
            )
            _static(source, out, cfg, ctx, processor, tensorrt=True)
            form = check_qdq(out)
            if not form.ok:
                raise PassFailed(
                    f"{out.name} is not TensorRT-ready Q/DQ: {'; '.join(form.problems[:3])}"
                )
            ctx.metrics["tensorrt_qdq"] = {
                "quantize_nodes": form.quantize_nodes,
                "dequantize_nodes": form.dequantize_nodes,
                "per_channel_weights": form.per_channel_weights,
            }
            variants.append(Variant("int8-qdq", "onnxruntime", "int8", "tensorrt", out.name))
    ctx.metrics["validation_accuracy"] = validation_accuracy(
        ctx, processor, [ctx.work_dir / v.file for v in variants if v.file]
    )
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, dict(artifact.meta))


def validation_accuracy(ctx: PassContext, processor: Any, files: list[Path]) -> dict[str, float]:
    """Validation accuracy of each INT8 file, so a drop is seen where it happens."""
    from compress.data.text import sorted_batches
    from compress.onnx_tools import feeds_for, session

    split = ctx.data.validation
    encoded = ctx.task.encode(processor, split.inputs, ctx.max_length)
    lengths = ctx.task.lengths(encoded)
    out = {}
    for file in files:
        sess = session(file)
        preds = np.zeros(len(encoded), dtype=np.int64)
        for idx in sorted_batches(lengths, 64):
            batch = ctx.task.collate(processor, encoded, idx)
            preds[idx] = sess.run(None, feeds_for(sess, batch))[0].argmax(-1)
        out[file.name] = float((preds == split.labels).mean())
        ctx.log(f"{file.name}: validation accuracy {out[file.name]:.4f}")
    return out


PASS = PassInfo(
    name="quantize",
    summary="Post-training INT8 (ONNX Runtime): CPU dynamic/static, symmetric Q/DQ for TensorRT.",
    config=QuantizeConfig,
    apply=apply,
    consumes="onnx",
    produces="onnx",
)
