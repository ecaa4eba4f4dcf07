"""One check shared by the architecture tests: export, both INT8 files, and a TensorRT engine."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

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
    model: Artifact,
    make_ctx: Callable[[str], PassContext],
    cfg: QuantizeConfig,
    cache: Path,
    reference: tuple[dict[str, np.ndarray], np.ndarray],
) -> None:
    """Both FP32 exports give `reference`'s PyTorch logits (computed by the caller from the
    source model) on its inputs, every INT8 file's weights are its FP32 source's rounded to
    nearest with min-max scales, the TensorRT-form file lints clean (NVIDIA's parser
    included where installed) and, with TensorRT-RTX (CI installs it), builds an engine."""
    from tests.qdq_reference import exact_session

    feed, expected = reference
    assert float(np.ptp(expected, axis=0).max()) > 1e-3  # inputs the model tells apart
    ctx = make_ctx("export")
    onnx_artifact = export(model, ExportOnnxConfig(), ctx)
    for variant in onnx_artifact.variants:
        sess = exact_session(onnx_artifact.file(variant))
        declared = {i.name for i in sess.get_inputs()}
        got = sess.run(None, {k: v for k, v in feed.items() if k in declared})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0, err_msg=variant.name)
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
