"""`compress lint-trt`: our TensorRT Q/DQ export passes; ONNX Runtime's pitfalls are flagged."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from compress.artifacts import Artifact
from compress.cli import main
from compress.trt.lint import UNSUPPORTED_OPS, _check_operators, lint_onnx
from tests.conftest import write_bad_qdq_onnx


def test_flags_asymmetric_and_int32_bias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_bad_qdq_onnx(tmp_path / "bad.onnx")
    assert main(["lint-trt", str(bad), "--no-polygraphy"]) == 3
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert any(x.startswith("error") and "x_quant" in x and "uint8" in x for x in lines)
    assert any(x.startswith("error") and "bias_dequant" in x and "int32" in x for x in lines)
    assert "TensorRT would reject" in out.err


def test_our_tensorrt_qdq_export_is_clean(
    tiny_qdq: Artifact, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_qdq.path / "model_int8_qdq.onnx"
    assert main(["lint-trt", str(path), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().endswith("0 error(s), 0 warning(s)")
    checks = {f.check for f in lint_onnx(path, polygraphy=False)}
    assert {"opset", "operators", "qdq", "shapes"} <= checks


def test_fused_onnx_runtime_graph_is_refused(tiny_onnx: Artifact) -> None:
    findings = lint_onnx(tiny_onnx.path / "model_ort.onnx", polygraphy=False)
    assert any(f.severity == "error" and "com.microsoft" in f.message for f in findings)


def test_operator_list_without_tensorrt() -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulInteger", ["a", "b"], ["c"], "mmi")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.INT8, [2, 2]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [2, 2])],
    )
    (finding,) = _check_operators(helper.make_model(graph), backend=None)
    assert finding.severity == "error" and "quantize's tensorrt target" in finding.message


def test_unsupported_list_matches_the_parser() -> None:
    pytest.importorskip("tensorrt_rtx")
    import onnx.defs

    from compress.trt.cache import supported_operator

    supported = supported_operator("tensorrt_rtx")
    ops = {s.name for s in onnx.defs.get_all_schemas_with_history() if s.domain == ""}
    assert {op for op in ops if not supported(op)} == set(UNSUPPORTED_OPS) & ops


def test_unnamed_dynamic_axis_is_a_warning(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], "relu")], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    findings = lint_onnx(path, polygraphy=False)
    assert any(
        f.severity == "warning" and f.check == "shapes" and "unnamed" in f.message for f in findings
    )
    assert not any(f.severity == "error" for f in findings)


def test_missing_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit code 2 (a user error) with a message naming the file, not a traceback."""
    assert main(["lint-trt", str(tmp_path / "nope.onnx")]) == 2
    err = capsys.readouterr().err
    assert "nope.onnx" in err and "Traceback" not in err
