from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compress.artifacts import Artifact
from compress.passes.base import PassContext
from compress.quant.qdq_check import check_qdq

pytest.importorskip("nncf")
pytest.importorskip("torchao")


def test_qat_writes_tensorrt_qdq_that_matches_the_fake_quant_model(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    from compress.passes.qat import QatConfig, apply

    ctx = make_ctx("qat")
    cfg = QatConfig(epochs=1, batch_size=16, lr=1e-4, calibration_samples=32)
    out = apply(tiny_hf, cfg, ctx)
    assert out.kind == "onnx"
    assert [(v.precision, v.target) for v in out.variants] == [("int8", "tensorrt")]
    path = out.file(out.variants[0])
    report = check_qdq(path)
    assert report.ok, report.problems
    assert report.per_channel_weights > 0 and report.per_tensor_weights == 0
    # weights are stored as int8 (folded), not float behind a QuantizeLinear
    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert all(numpy_helper.to_array(inits[n.input[0]]).dtype == np.int8 for n in weights)
    # embedding lookups stay float (keep_float), as TensorRT's Q/DQ form expects
    producers = {o: n.op_type for n in graph.node for o in n.output}
    gathers = [n for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
    assert gathers and all(producers.get(n.input[0]) is None for n in gathers)
    assert all(inits[n.input[0]].data_type == onnx.TensorProto.FLOAT for n in gathers)
    # parity was checked against the fake-quant PyTorch model with the graph run exactly;
    # this CPU's INT8 kernels are measured beside it, as information
    assert 0 <= ctx.metrics["parity"][path.name] <= cfg.atol
    kernels = ctx.metrics["int8_kernels"]
    assert kernels["max_logit_diff"] >= 0 and 0 <= kernels["argmax_agreement"] <= 1
    assert isinstance(kernels["cpu_features"], list) and kernels["cpu"]
    # graph inputs carry the names of the forward arguments they feed (a mix-up of
    # attention_mask and token_type_ids once cost 0.4-0.7 logits on the real MiniLM)
    declared = [i.name for i in graph.input]
    forward_order = ("input_ids", "attention_mask", "token_type_ids")
    assert declared == [n for n in forward_order if n in declared]
    assert ctx.metrics["steps"] == 6  # 96 rows / 16 per step, one epoch
    accuracy = ctx.metrics["validation_accuracy"][path.name]
    assert 0.0 <= accuracy <= 1.0
    assert (Path(ctx.work_dir) / "tokenizer.json").is_file()


def test_qat_recipe_order_and_tensorrt_input() -> None:
    from compress.passes.qat import PASS, QatConfig
    from compress.passes.tensorrt import TensorRTConfig, _check_input

    handed = PASS.handed_over(QatConfig(), "text-classification")
    assert _check_input(TensorRTConfig(precision="int8"), handed) is None
    assert _check_input(TensorRTConfig(precision="fp16"), handed) is not None


def test_recipe_puts_qat_where_export_and_quantize_would_be(tmp_path: Path) -> None:
    from compress.errors import RecipeError
    from compress.recipe import load_recipe

    good = tmp_path / "good.yaml"
    good.write_text("passes:\n  - qat: {epochs: 1}\n  - tensorrt: {precision: int8}\n")
    assert [s.name for s in load_recipe(good).steps] == ["qat", "tensorrt"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("passes:\n  - export_onnx\n  - qat\n")
    with pytest.raises(RecipeError, match="needs a Hugging Face model"):
        load_recipe(bad)
