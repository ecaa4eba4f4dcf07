from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compress.artifacts import Artifact
from compress.passes.base import PassContext
from compress.quant.parity import session
from compress.quant.qdq_check import check_qdq
from compress.tasks import get_task

pytest.importorskip("nncf")
pytest.importorskip("torchao")


def test_qat_writes_tensorrt_qdq_that_matches_the_fake_quant_model(
    tiny_hf: Artifact,
    make_ctx: Callable[[str], PassContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exported Q/DQ graph, executed exactly, computes what the fake-quant PyTorch model
    computes (both run here); its int8 weights are that model's weights rounded to nearest
    with the file's scales; the recorded parity, kernel deviation and accuracy are the
    figures computed here."""
    import torch

    import compress.quant.nncf_backend as backend
    from compress.passes.qat import QatConfig, apply
    from compress.quant.parity import feeds_for
    from tests.qdq_reference import exact_session, int8_weights, split_accuracy

    stripped: list[torch.nn.Module] = []
    real_export = backend.export_qat

    def spy(model: Any, *args: Any, **kwargs: Any) -> Any:
        out = real_export(model, *args, **kwargs)
        stripped.append(out[0])
        return out

    monkeypatch.setattr(backend, "export_qat", spy)
    ctx = make_ctx("qat")
    cfg = QatConfig(epochs=1, batch_size=16, lr=1e-4, calibration_samples=32)
    out = apply(tiny_hf, cfg, ctx)
    assert out.kind == "onnx" and len(stripped) == 1
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
    # graph inputs carry the names of the forward arguments they feed (a mix-up of
    # attention_mask and token_type_ids once cost 0.4-0.7 logits on the real MiniLM)
    declared = [i.name for i in graph.input]
    forward_order = ("input_ids", "attention_mask", "token_type_ids")
    assert declared == [n for n in forward_order if n in declared]

    # every folded int8 weight, dequantized, is a Linear weight of the fake-quant model rounded
    # to nearest with the file's scale (elements inside the int8 range within s/2): a wrong
    # scale, axis or a transposed weight matches none
    model = stripped[0].eval()
    linear = [m.weight.detach().double().numpy() for m in model.modules()
              if isinstance(m, torch.nn.Linear)]  # fmt: skip
    folded = int8_weights(path)
    assert len(folded) == len(linear) == report.per_channel_weights
    for name, (q, scale, zero, axis) in folded.items():
        assert np.all(zero == 0), name
        shape = [1] * q.ndim
        shape[axis] = -1
        s = np.abs(scale.astype(np.float64)).reshape(shape)
        w_hat = q.astype(np.float64) * s
        inside = np.abs(q.astype(np.int64)) < 127
        bound = np.broadcast_to(s / 2 * (1 + 1e-5), q.shape)[inside]
        candidates = (*linear, *(w.T for w in linear))
        assert any(
            w.shape == q.shape and np.all(np.abs(w_hat - w)[inside] <= bound) for w in candidates
        ), name

    # the file, executed exactly, against the fake-quant model run here on the validation rows
    processor = ctx.task.load_processor(tiny_hf.path)
    batches = ctx.task.parity_batches(processor, ctx.data.validation.inputs, ctx.max_length)
    exact = exact_session(path)
    worst = 0.0
    with torch.inference_mode():
        for batch in batches:
            want = model(**batch).logits.double().numpy()
            got = exact.run(None, feeds_for(exact, batch))[0]
            worst = max(worst, float(np.abs(got - want).max()))
    # the same arithmetic in float32 (4e-9 measured); 1e-3 leaves room for a rare half-way
    # tie rounded the other way in another op order (one activation step ~1e-2 times a weight
    # ~2e-2), far below what one wrong scale or graph input moves (0.37-0.77 on MiniLM)
    assert worst < 1e-3
    assert ctx.metrics["parity"][path.name] == pytest.approx(worst, abs=1e-6)
    # this CPU's INT8 kernels, measured beside it: the recorded figures are these
    fused = session(path)
    diff, agree, rows = 0.0, 0, 0
    for batch in batches:
        got = fused.run(None, feeds_for(fused, batch))[0]
        ref = exact.run(None, feeds_for(exact, batch))[0]
        diff = max(diff, float(np.abs(got - ref).max()))
        agree, rows = agree + int((got.argmax(-1) == ref.argmax(-1)).sum()), rows + len(ref)
    kernels = ctx.metrics["int8_kernels"]
    assert kernels["max_logit_diff"] == pytest.approx(diff, abs=1e-5)
    assert kernels["argmax_agreement"] == agree / rows
    assert isinstance(kernels["cpu_features"], list) and kernels["cpu"]
    assert ctx.metrics["steps"] == 6  # 96 rows / 16 per step, one epoch
    val = ctx.data.validation
    accuracy = split_accuracy(path, processor, val.inputs, val.labels, ctx.max_length, exact=True)
    assert ctx.metrics["validation_accuracy"][path.name] == accuracy
    assert (Path(ctx.work_dir) / "tokenizer.json").is_file()


def test_qat_recipe_order_and_tensorrt_input() -> None:
    from compress.passes.qat import PASS, QatConfig
    from compress.passes.tensorrt import TensorRTConfig, _check_input

    handed = PASS.handed_over(QatConfig(), get_task("text-classification"))
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
