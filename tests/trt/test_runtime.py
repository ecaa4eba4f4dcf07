"""TensorRT engines as a benchmark runtime: shape checks, facts, and what a GPU-less machine says.

Running an engine needs an NVIDIA GPU with a TensorRT that supports it; these
machines have none (TensorRT-RTX refuses the lent H100, SM 9.0). What is
tested here: the engine is recognised and described, its size and parameters
are counted, shapes outside its profile are refused with the range, the
runner stays importable with the standard library alone (bundles copy it),
and asking to run an engine without a GPU is one clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compress.artifacts import Artifact
from compress.benchmark.model_bench import ModelBenchSpec, bench_model, detect
from compress.benchmark.runtimes import count_parameters, model_size_bytes, open_runtime
from compress.data import Dataset
from compress.errors import UserError
from compress.passes.base import PassContext
from compress.passes.tensorrt import TensorRTConfig, apply
from compress.tasks import get_task
from compress.trt.engine_runner import shape_problem
from compress.trt.runtime import engine_backend, engine_source, engine_unavailable

TEXT = get_task("text-classification")

ROOT = Path(__file__).parents[2]


def test_shapes_inside_the_profile_pass_and_outside_name_the_range() -> None:
    profile = ((1, 1), (4, 32), (8, 64))
    assert shape_problem("input_ids", (8, 64), profile) is None
    assert shape_problem("input_ids", (1, 1), profile) is None
    too_big = shape_problem("input_ids", (16, 32), profile)
    assert too_big is not None and "axis 0 is 16" in too_big and "1..8" in too_big
    too_long = shape_problem("input_ids", (2, 128), profile)
    assert too_long is not None and "axis 1 is 128" in too_long and "1..64" in too_long
    rank = shape_problem("pixel_values", (1, 3, 224, 224), profile)
    assert rank is not None and "4 dimensions" in rank


@pytest.mark.parametrize("module", ["engine_runner", "builder"])
def test_vendored_modules_import_only_the_standard_library(module: str) -> None:
    """Bundles carry these files alone: they must import nothing of compress or numpy."""
    code = (
        f"import sys; sys.path.insert(0, sys.argv[1]); import {module}; "
        "heavy = {'numpy', 'torch', 'compress', 'tensorrt'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-I", "-c", code, str(ROOT / "compress" / "trt")], check=True)


@pytest.fixture()
def engine_step(
    tiny_onnx: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> tuple[Artifact, Path]:
    """A run folder with a real TensorRT-RTX engine step built from the tiny ONNX export."""
    pytest.importorskip("tensorrt_rtx")
    work = tmp_path / "03-tensorrt"
    work.mkdir()
    ctx = PassContext(work, tiny_dataset, 32, 0, "engine", progress=False)
    source_step = tmp_path / tiny_onnx.path.name
    source_step.symlink_to(tiny_onnx.path, target_is_directory=True)
    cfg = TensorRTConfig(
        backend="tensorrt_rtx",
        precision="fp32",
        compute_capability=["8.6"],
        cache_dir=str(tmp_path),
    )
    engine = apply(tiny_onnx, cfg, ctx)
    return engine, ctx.work_dir / str(engine.variants[0].file)


@pytest.mark.tensorrt
def test_engine_counts_its_source_weights_and_its_own_bytes(
    engine_step: tuple[Artifact, Path], tiny_onnx: Artifact
) -> None:
    artifact, path = engine_step
    variant = artifact.variants[0]
    source = engine_source(artifact.path, artifact.meta)
    assert source is not None and source.resolve() == (tiny_onnx.path / "model.onnx").resolve()
    onnx_variant = tiny_onnx.variant("fp32")
    assert count_parameters(artifact, variant, TEXT) == count_parameters(
        tiny_onnx, onnx_variant, TEXT
    )
    assert model_size_bytes(artifact, variant) == path.stat().st_size
    assert engine_backend(path) == "tensorrt_rtx"


@pytest.mark.tensorrt
def test_engine_is_detected_with_its_task_and_build(engine_step: tuple[Artifact, Path]) -> None:
    _, path = engine_step
    kind, task, folder = detect(path)
    assert (kind, task, folder) == ("tensorrt", "text-classification", path.parent)
    build = json.loads((path.parent / "build.json").read_text())
    assert build["backend"] == "tensorrt_rtx" and build["precision"] == "fp32"


@pytest.mark.tensorrt
@pytest.mark.skipif(
    engine_unavailable() is None,
    reason="this machine can run engines (a CUDA GPU), so the no-GPU error cannot occur; "
    "CI has no GPU: it runs there",
)
def test_running_an_engine_without_a_gpu_is_one_clear_error(
    engine_step: tuple[Artifact, Path],
) -> None:
    artifact, path = engine_step
    reason = engine_unavailable()
    assert reason is not None
    with pytest.raises(UserError, match="cannot run the TensorRT engine") as info:
        open_runtime(artifact, artifact.variants[0], 1, TEXT)
    assert reason in str(info.value)
    with pytest.raises(UserError, match=reason):
        bench_model(ModelBenchSpec(model=path, batch_sizes=[1], repetitions=1), progress=False)
    with pytest.raises(UserError, match="cannot run a tensorrt model"):
        bench_model(ModelBenchSpec(model=path, runtimes=["onnxruntime"]), progress=False)
