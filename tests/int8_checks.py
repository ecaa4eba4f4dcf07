"""One check shared by the architecture tests: export, both INT8 files, and a TensorRT engine."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from compress.artifacts import Artifact
from compress.passes.base import PassContext
from compress.passes.export_onnx import ExportOnnxConfig
from compress.passes.export_onnx import apply as export
from compress.passes.quantize import QuantizeConfig
from compress.passes.quantize import apply as quantize
from compress.passes.tensorrt import TensorRTConfig
from compress.passes.tensorrt import apply as build_trt
from compress.trt.lint import lint_onnx
from tests.qdq_reference import int8_weight_problems


def assert_exports_to_int8_and_engine(
    model: Artifact, make_ctx: Callable[[str], PassContext], cfg: QuantizeConfig, cache: Path
) -> None:
    """The export matches PyTorch, every INT8 file's weights are its FP32 source's rounded to
    nearest with min-max scales, the TensorRT-form file lints clean (NVIDIA's parser
    included where installed) and, with TensorRT-RTX (CI installs it), builds an engine."""
    ctx = make_ctx("export")
    onnx_artifact = export(model, ExportOnnxConfig(), ctx)
    assert max(ctx.metrics["parity"].values()) < 1e-4
    out = quantize(onnx_artifact, cfg, make_ctx("quantize"))
    findings = lint_onnx(out.path / "model_int8_qdq.onnx", polygraphy=False)
    assert [f for f in findings if f.severity == "error"] == []
    # every INT8 weight of every file is its FP32 source weight rounded to nearest, min-max
    for variant in out.variants:
        fused = variant.name == "int8-dynamic"  # built from the cpu graph where there is one
        source = onnx_artifact.file(onnx_artifact.for_target("cpu" if fused else "portable"))
        assert int8_weight_problems(source, out.file(variant)) == [], variant.name
    if importlib.util.find_spec("tensorrt_rtx") is not None:
        ctx = make_ctx("engine")
        trt = TensorRTConfig(backend="tensorrt_rtx", precision="int8", cache_dir=str(cache))
        engine = build_trt(out, trt, ctx)
        assert engine.kind == "engine" and ctx.metrics["tensorrt"]["parser_errors"] == 0
