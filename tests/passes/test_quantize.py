from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compress.artifacts import Artifact, Variant
from compress.data import Dataset
from compress.passes.base import PassContext
from compress.passes.export_onnx import ExportOnnxConfig
from compress.passes.export_onnx import apply as export
from compress.passes.quantize import QuantizeConfig, apply
from compress.qdq_check import check_qdq


@pytest.fixture(scope="module")
def onnx_input(
    tiny_model_dir: Path, tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Artifact:
    work = tmp_path_factory.mktemp("q-export")
    ctx = PassContext(
        work_dir=work, data=tiny_dataset, max_length=32, seed=0, key="e", progress=False
    )
    src = Artifact("hf", tiny_model_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])
    return export(src, ExportOnnxConfig(), ctx)


def _ctx(tmp_path: Path, data: Dataset) -> PassContext:
    return PassContext(work_dir=tmp_path, data=data, max_length=32, seed=0, key="q", progress=False)


def test_both_targets(onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tiny_dataset)
    out = apply(onnx_input, QuantizeConfig(calibration_samples=32), ctx)
    assert [(v.name, v.target) for v in out.variants] == [
        ("int8-dynamic", "cpu"),
        ("int8-qdq", "tensorrt"),
    ]
    # the TensorRT file is symmetric int8 Q/DQ with per-channel weights and float biases
    report = check_qdq(tmp_path / "model_int8_qdq.onnx")
    assert report.ok, report.problems
    assert report.per_channel_weights > 0 and report.per_tensor_weights == 0
    graph = onnx.load(str(tmp_path / "model_int8_qdq.onnx")).graph
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert numpy_helper.to_array(inits[node.input[0]]).dtype == np.int8
    # the CPU file came from the fused graph and uses integer kernels
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model_int8_cpu.onnx")).graph.node}
    assert ops & {"QAttention", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert set(ctx.metrics["validation_accuracy"]) == {"model_int8_cpu.onnx", "model_int8_qdq.onnx"}
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "config.json").is_file()
    assert (tmp_path / "model_int8_cpu.onnx").stat().st_size < (
        onnx_input.path / "model.onnx"
    ).stat().st_size


def test_static_cpu(onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path) -> None:
    cfg = QuantizeConfig(targets=["cpu"], cpu_mode="static", calibration_samples=16)
    out = apply(onnx_input, cfg, _ctx(tmp_path, tiny_dataset))
    assert out.variants[0].name == "int8-static"
    graph = onnx.load(str(tmp_path / "model_int8_cpu.onnx")).graph
    assert "QuantizeLinear" in [n.op_type for n in graph.node]
    assert "Attention" not in [n.op_type for n in graph.node]  # built from the portable graph


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_calibration_runs_or_fails_clearly(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path, method: str
) -> None:
    from compress.errors import PassFailed

    cfg = QuantizeConfig(targets=["tensorrt"], method=method, calibration_samples=16)  # type: ignore[arg-type]
    try:
        apply(onnx_input, cfg, _ctx(tmp_path, tiny_dataset))
    except PassFailed as exc:
        assert "try method: minmax" in str(exc)
    else:
        assert check_qdq(tmp_path / "model_int8_qdq.onnx").ok


def test_exclude_keeps_matching_nodes_in_float(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    cfg = QuantizeConfig(targets=["tensorrt"], calibration_samples=16, exclude=[".*classifier.*"])
    apply(onnx_input, cfg, _ctx(tmp_path, tiny_dataset))
    graph = onnx.load(str(tmp_path / "model_int8_qdq.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    classifier = [
        n for n in graph.node if "classifier" in n.name and n.op_type in ("Gemm", "MatMul")
    ]
    assert classifier
    for node in classifier:
        assert all(
            producers.get(i) is None or producers[i].op_type != "DequantizeLinear"
            for i in node.input
        )


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="repeat"):
        QuantizeConfig(targets=["cpu", "cpu"])
    with pytest.raises(ValueError, match="valid regex"):
        QuantizeConfig(exclude=["("])
