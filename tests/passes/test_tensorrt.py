"""The tensorrt pass: real TensorRT-RTX builds on the CPU from our own exports, and validation."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

from compress.artifacts import Artifact, StepResult
from compress.errors import EngineBuildError, RecipeError
from compress.passes.base import PassContext
from compress.passes.tensorrt import TensorRTConfig, apply
from compress.recipe import load_recipe
from compress.run.report_step import CPU_RUNTIMES, not_run, select_stages
from compress.trt.cache import BuildOptions, build_engine
from compress.trt.options import ShapeRange
from compress.trt.runtime import engine_unavailable
from tests.conftest import write_bad_qdq_onnx


@pytest.fixture()
def rtx() -> None:
    pytest.importorskip("tensorrt_rtx")  # CI installs it (.ci/run); a guard for bare installs


def _engine(ctx: PassContext, out: Artifact) -> Path:
    (variant,) = out.variants
    assert variant.runtime == "tensorrt" and variant.target == "tensorrt"
    path = ctx.work_dir / str(variant.file)
    assert path.is_file() and path.stat().st_size > 0
    return path


# What a serialized TensorRT-RTX 1.7 engine shows without a GPU to deserialize it on: the
# names of the ONNX nodes and I/O tensors it was built from, the SM targets it was compiled
# for ("accelerators={sm86 }"), and the source of its generated kernels, whose variables
# are declared with their element type ("__myln_half __v3;", "__myln_int8 __v7;").
def _accelerators(engine: bytes) -> list[str]:
    found = re.findall(rb"accelerators=\{((?:sm\d+ )+)\}", engine)
    assert len(found) == 1, found
    return found[0].decode().split()


def _kernel_variables(engine: bytes, dtype: str) -> int:
    return engine.count(f"__myln_{dtype} __v".encode())


def _names_in(engine: bytes, names: set[str]) -> set[str]:
    return {name for name in names if name.encode() in engine}


def _graph(path: Path) -> onnx.GraphProto:
    return onnx.load(str(path)).graph


@pytest.mark.tensorrt
@pytest.mark.usefixtures("rtx")
def test_fp32_engine_parses_every_node(
    tiny_onnx: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    """The FP32 engine holds model.onnx's I/O and nodes, compiled for SM 8.6 only in FP32
    kernels, with one batch 1..8 x sequence 1..32 profile over every input."""
    ctx = make_ctx("fp32")
    cfg = TensorRTConfig(
        backend="tensorrt_rtx",
        precision="fp32",
        compute_capability=["8.6"],
        cache_dir=str(tmp_path / "c"),
    )
    out = apply(tiny_onnx, cfg, ctx)
    engine = _engine(ctx, out).read_bytes()
    built = ctx.metrics["tensorrt"]
    graph = _graph(tiny_onnx.path / "model.onnx")
    assert built["parser_errors"] == 0 and built["onnx_nodes"] == len(graph.node)
    assert built["network_layers"] > 0 and built["build_seconds"] > 0
    assert built["backend"] == "tensorrt_rtx" and built["compute_capabilities"] == ["8.6"]
    # one profile over every ONNX input: batch 1..8, sequence 1..max_length (32)
    profile = {"min": [1, 1], "opt": [1, 32], "max": [8, 32]}
    assert built["inputs"] == {t.name: profile for t in graph.input}
    assert built["outputs"] == [t.name for t in graph.output] == ["logits"]
    # the engine itself: built from model.onnx's graph, for SM 8.6 only, in FP32 kernels
    io = {t.name for t in (*graph.input, *graph.output)}
    assert (
        _names_in(engine, io) == io == {"input_ids", "attention_mask", "token_type_ids", "logits"}
    )
    nodes = {n.name for n in graph.node}
    assert len(_names_in(engine, nodes)) > len(nodes) // 4
    assert _accelerators(engine) == ["sm86"]
    assert _kernel_variables(engine, "half") == _kernel_variables(engine, "int8") == 0
    assert out.kind == "engine" and out.meta["engine_source"] == "model.onnx"
    assert json.loads((ctx.work_dir / "build.json").read_text())["key"] == built["key"]
    assert (ctx.work_dir / "build.log").stat().st_size > 0
    assert (ctx.work_dir / "tokenizer.json").is_file()


@pytest.mark.tensorrt
@pytest.mark.usefixtures("rtx")
def test_int8_engine_from_qdq_and_the_cache(
    tiny_qdq: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    """The INT8 engine holds every Q/DQ node of the Q/DQ file in INT8 kernels for the five RTX
    targets; the same build is read back from the cache, another profile is another engine."""
    cache = str(tmp_path / "cache")
    cfg = TensorRTConfig(backend="tensorrt_rtx", precision="int8", cache_dir=cache)
    first_ctx = make_ctx("int8-a")
    first = _engine(first_ctx, apply(tiny_qdq, cfg, first_ctx))
    assert first_ctx.metrics["tensorrt"]["cached"] is False
    default = ["8.0", "8.6", "8.9", "12.0", "12.1"]  # every RTX target but Turing (7.5)
    assert first_ctx.metrics["tensorrt"]["compute_capabilities"] == default
    engine = first.read_bytes()
    assert _accelerators(engine) == ["sm80", "sm86", "sm89", "sm120", "sm121"]
    # built from the Q/DQ file: every Q/DQ node of it is in the engine, with INT8 kernels
    qdq = _graph(tiny_qdq.path / "model_int8_qdq.onnx")
    quantizers = {n.name for n in qdq.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert len(quantizers) > 100 and _names_in(engine, quantizers) == quantizers
    assert _kernel_variables(engine, "int8") > 50 and _kernel_variables(engine, "half") == 0
    again_ctx = make_ctx("int8-b")
    again = _engine(again_ctx, apply(tiny_qdq, cfg, again_ctx))
    assert again_ctx.metrics["tensorrt"]["cached"] is True
    assert again.read_bytes() == first.read_bytes()
    other_ctx = make_ctx("int8-c")  # another profile is another engine
    other_cfg = cfg.model_copy(update={"batch": ShapeRange(min=1, opt=2, max=4)})
    other = _engine(other_ctx, apply(tiny_qdq, other_cfg, other_ctx))
    assert other_ctx.metrics["tensorrt"]["cached"] is False
    assert other_ctx.metrics["tensorrt"]["inputs"]["input_ids"] == {
        "min": [1, 1],
        "opt": [2, 32],
        "max": [4, 32],
    }
    assert other.read_bytes() != engine
    assert len([p for p in Path(cache).iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.tensorrt
@pytest.mark.usefixtures("rtx")
def test_fp16_on_rtx_builds_an_fp16_graph(
    tiny_onnx: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    """An fp16 build on TensorRT-RTX compiles half-precision kernels for SM 8.9, FP32 I/O kept."""
    ctx = make_ctx("fp16")
    cfg = TensorRTConfig(
        backend="tensorrt_rtx",
        precision="fp16",
        compute_capability=[8.9],
        cache_dir=str(tmp_path),  # type: ignore[list-item]
    )
    engine = _engine(ctx, apply(tiny_onnx, cfg, ctx)).read_bytes()
    assert "converted to FP16" in ctx.metrics["tensorrt"]["precision_from"]
    # the engine's kernels compute in half precision (an FP32 build declares no half)
    assert _kernel_variables(engine, "half") > 50 and _kernel_variables(engine, "int8") == 0
    assert _accelerators(engine) == ["sm89"]
    graph = _graph(tiny_onnx.path / "model.onnx")  # FP32 I/O kept: the same tensor names
    io = {t.name for t in (*graph.input, *graph.output)}
    assert _names_in(engine, io) == io


@pytest.mark.tensorrt
@pytest.mark.usefixtures("rtx")
def test_parser_rejection_names_the_node(tmp_path: Path) -> None:
    bad = write_bad_qdq_onnx(tmp_path / "bad.onnx")
    # the parser stops at the first node it refuses: the asymmetric QuantizeLinear
    with pytest.raises(EngineBuildError, match=r"x_quant \(QuantizeLinear\): .*zero point") as info:
        build_engine(
            bad, "tensorrt_rtx", BuildOptions("int8", compute_capabilities=("8.6",)), tmp_path
        )
    assert "parser rejected bad.onnx" in str(info.value)


@pytest.mark.tensorrt
@pytest.mark.usefixtures("rtx")
def test_report_lists_engines_as_not_run(
    tiny_onnx: Artifact, tiny_qdq: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    ctx = make_ctx("report")
    engine = apply(
        tiny_qdq,
        TensorRTConfig(backend="tensorrt_rtx", compute_capability=["8.6"], cache_dir=str(tmp_path)),
        ctx,
    )
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        "passes: [export_onnx, {quantize: {targets: [tensorrt]}}, tensorrt]\n"
        "benchmark: {stages: final}\n"
    )
    recipe = load_recipe(recipe_file)
    results = [
        StepResult(name, Path(f"/runs/{i:02d}-{name}"), artifact, {}, reused=True)
        for i, (name, artifact) in enumerate(
            [
                ("input", tiny_onnx),
                ("export_onnx", tiny_onnx),
                ("quantize", tiny_qdq),
                ("tensorrt", engine),
            ]
        )
    ]
    cpu = [(step.name, variant) for step, variant in select_stages(recipe, results, CPU_RUNTIMES)]
    assert cpu == [("input", "fp32"), ("quantize", "int8-qdq")]
    (skipped,) = not_run(results, CPU_RUNTIMES)
    assert skipped["variant"] == "int8-engine" and "not run" in skipped["reason"]
    gpu = select_stages(recipe, results, (*CPU_RUNTIMES, "tensorrt"))
    assert [(step.name, variant) for step, variant in gpu] == [
        ("input", "fp32"),
        ("tensorrt", "int8-engine"),
    ]
    assert not not_run(results, (*CPU_RUNTIMES, "tensorrt"))
    reason = engine_unavailable()
    if reason is not None:  # this machine: the report leaves the engine out, saying why
        assert [entry["variant"] for entry in not_run(results)] == ["int8-engine"]
        assert reason in not_run(results)[0]["reason"]


def _recipe_error(tmp_path: Path, passes: str) -> RecipeError:
    path = tmp_path / "r.yaml"
    path.write_text(f"passes:\n{passes}")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return info.value


def test_bad_options_are_recipe_errors(tmp_path: Path) -> None:
    head = "  - export_onnx\n  - quantize: {targets: [tensorrt]}\n"
    error = _recipe_error(tmp_path, head + "  - tensorrt: {precision: int2}\n")
    assert "passes[2].tensorrt.precision" in str(error)
    error = _recipe_error(tmp_path, head + "  - tensorrt: {compute_capability: [9.0]}\n")
    assert "compute_capability" in str(error)
    error = _recipe_error(tmp_path, head + "  - tensorrt: {batch: {min: 4, opt: 2, max: 8}}\n")
    assert "min <= opt <= max" in str(error)
    error = _recipe_error(tmp_path, head + "  - tensorrt: {workspace: 10}\n")
    assert "did you mean 'workspace_mb'" in str(error)
    error = _recipe_error(
        tmp_path, head + "  - tensorrt: {backend: tensorrt, compute_capability: [8.6]}\n"
    )
    assert "full TensorRT builds for the GPU it runs on" in str(error)


def test_input_the_engine_cannot_use_is_a_recipe_error(tmp_path: Path) -> None:
    error = _recipe_error(tmp_path, "  - export_onnx\n  - tensorrt\n")
    assert "precision int8 builds the Q/DQ file" in str(error) and ":3 " in str(error)
    error = _recipe_error(
        tmp_path, "  - export_onnx\n  - quantize\n  - tensorrt: {precision: fp16}\n"
    )
    assert "builds the portable FP32 ONNX file" in str(error) and "export_onnx does" in str(error)
    error = _recipe_error(tmp_path, "  - tensorrt\n")
    assert "needs an ONNX model" in str(error)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="full TensorRT is installed here, so the not-installed path cannot be reached "
    "(CI installs only tensorrt-rtx: it runs there)",
)
def test_missing_backend_is_a_validation_error(tmp_path: Path) -> None:
    error = _recipe_error(
        tmp_path, "  - export_onnx\n  - tensorrt: {backend: tensorrt, precision: fp32}\n"
    )
    assert "needs 'tensorrt', which is not installed" in str(error)
    assert "edge-compress[tensorrt-rtx]" in str(error)


def test_auto_needs_either_backend() -> None:
    from compress.errors import MissingDependencyError
    from compress.recipe.registry import get_pass, missing_backends

    info = get_pass("tensorrt")
    installed = any(importlib.util.find_spec(m) for m in ("tensorrt", "tensorrt_rtx"))
    assert (missing_backends(info, TensorRTConfig()) == []) is installed
    message = str(MissingDependencyError(("tensorrt", "tensorrt_rtx"), "pass 'tensorrt'", "hint"))
    assert (
        message
        == "pass 'tensorrt' needs 'tensorrt' or 'tensorrt_rtx', and neither is installed: hint"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="full TensorRT is installed here, so the not-installed path cannot be reached "
    "(CI installs only tensorrt-rtx: it runs there)",
)
def test_if_missing_skip_validates_and_passes_the_input_on(
    tiny_qdq: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    from compress.errors import UserError

    path = tmp_path / "r.yaml"
    path.write_text(
        "passes:\n  - export_onnx\n  - quantize: {targets: [tensorrt]}\n"
        "  - tensorrt: {backend: tensorrt, if_missing: skip}\n"
    )
    assert load_recipe(path).steps[2].config.if_missing == "skip"  # type: ignore[attr-defined]
    ctx = make_ctx("skip")
    out = apply(tiny_qdq, TensorRTConfig(backend="tensorrt", if_missing="skip"), ctx)
    assert ctx.metrics == {"skipped": "backend 'tensorrt' is not installed"}
    assert out.kind == "onnx" and out.variants == tiny_qdq.variants and out.key != tiny_qdq.key
    for variant in out.variants:
        assert out.file(variant).read_bytes() == tiny_qdq.file(variant).read_bytes()
    with pytest.raises(UserError, match="'tensorrt' is not installed"):
        apply(tiny_qdq, TensorRTConfig(backend="tensorrt"), make_ctx("error"))
