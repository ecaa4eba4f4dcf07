"""A decoder's weight-only INT4 file for TensorRT: lint-trt passes, TensorRT-RTX builds it."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from compress.cli import main
from compress.llm.export import export_with_past
from compress.llm.int4_qdq import quantize_weights_qdq
from compress.llm.models import load_lm
from compress.llm.options import WeightOnlyConfig
from compress.trt.builder import BuildOptions
from compress.trt.lint import lint_onnx
from tests.llm_fixtures import build_tiny_llama


@pytest.fixture(scope="module")
def qdq_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("int4-trt")
    model, tokenizer = load_lm(str(build_tiny_llama(folder / "model")))
    exported = export_with_past(model, tokenizer, folder / "export", 18)
    target = folder / "model_int4_qdq.onnx"
    wo = WeightOnlyConfig(block_size=16, targets=["tensorrt"])
    quantize_weights_qdq(exported, target, wo, progress=False)
    return target


def test_lint_trt_passes_on_the_int4_file(
    qdq_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every check runs (polygraphy's ONNX Runtime run too, fed a prompt step) and none
    errs; the qdq check reads the weight-only form, not the INT8 rules."""
    assert main(["lint-trt", str(qdq_file), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().endswith("0 error(s), 0 warning(s)")
    findings = lint_onnx(qdq_file)
    qdq = [f for f in findings if f.check == "qdq"]
    assert any("28 INT4 MatMuls (block 16), 1 INT8" in f.message for f in qdq), qdq
    polygraphy = [f for f in findings if f.check == "polygraphy"]
    assert polygraphy and all(f.severity == "info" for f in polygraphy), polygraphy


def test_lint_trt_refuses_an_asymmetric_int4_weight(qdq_file: Path, tmp_path: Path) -> None:
    import numpy as np
    from onnx import TensorProto, helper

    model = onnx.load(str(qdq_file))
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear")
    scale = next(t for t in model.graph.initializer if t.name == dq.input[1])
    zero = np.full(tuple(scale.dims), 3, np.int8)
    model.graph.initializer.append(
        helper.make_tensor("zp", TensorProto.INT4, list(scale.dims), zero.ravel())
    )
    dq.input.append("zp")
    bad = tmp_path / "asymmetric.onnx"
    onnx.save(model, str(bad))
    findings = lint_onnx(bad, polygraphy=False)
    assert any(f.severity == "error" and "asymmetric" in f.message for f in findings)


@pytest.mark.tensorrt
def test_tensorrt_rtx_builds_an_int4_engine_for_prompt_and_decode(
    qdq_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines without a GPU")
    from compress.trt.cache import build_engine

    options = BuildOptions("int4", (1, 1, 2), (1, 16, 32), compute_capabilities=("8.9",))
    built = build_engine(qdq_file, "tensorrt_rtx", options, tmp_path)
    info = built.info
    assert info["parser_errors"] == 0 and info["network_layers"] > 0
    assert info["precision"] == "int4" and "FP16 activations" in info["precision_from"]
    engine = built.engine.read_bytes()
    assert len(engine) == info["engine_bytes"] > 0
    assert engine.count(b"__myln_half __v") > 0  # FP16 activations
    shapes = info["inputs"]
    past, ids, mask = (shapes[n] for n in ("past_key_values.0.key", "input_ids", "attention_mask"))
    # the prompt: an empty cache, up to 32 new tokens; decode: one token after up to 31
    assert (past["min"][2], ids["max"][1], mask["max"][1]) == (0, 32, 32)
    assert ids["min"][1] == 1 and past["max"][2] >= 31
    # the optimum is a decode step: 1 new token after 15 cached ones, a mask of 16
    assert (ids["opt"][1], past["opt"][2], mask["opt"][1]) == (1, 15, 16)
    assert past["opt"][0] == ids["opt"][0] == mask["opt"][0] == 1
    again = build_engine(qdq_file, "tensorrt_rtx", options, tmp_path)
    assert again.info["cached"] and again.engine == built.engine
