from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact
from compress.errors import ExportParityError
from compress.passes.base import PassContext
from compress.passes.export_onnx import ExportOnnxConfig, apply
from compress.quant.parity import check_parity, feeds_for, session
from compress.text.tokens import parity_batches


@pytest.fixture(scope="module")
def exported(
    tiny_model_dir: object, tmp_path_factory: pytest.TempPathFactory, tiny_dataset: object
) -> Artifact:
    from compress.artifacts import Variant

    work = tmp_path_factory.mktemp("export")
    ctx = PassContext(
        work_dir=work, data=tiny_dataset, max_length=32, seed=0, key="x", progress=False
    )  # type: ignore[arg-type]
    src = Artifact("hf", tiny_model_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])  # type: ignore[arg-type]
    out = apply(src, ExportOnnxConfig(), ctx)
    out.meta["metrics"] = ctx.metrics
    return out


def test_writes_portable_and_cpu_graphs(exported: Artifact) -> None:
    assert [(v.name, v.target) for v in exported.variants] == [
        ("fp32", "portable"),
        ("fp32-ort", "cpu"),
    ]
    portable = onnx.load(str(exported.path / "model.onnx"))
    ops = {n.op_type for n in portable.graph.node}
    assert not {"Attention", "SkipLayerNormalization"} & ops, (
        "portable graph must use plain ONNX ops"
    )
    fused = onnx.load(str(exported.path / "model_ort.onnx"))
    assert "Attention" in {n.op_type for n in fused.graph.node}
    assert exported.meta["metrics"]["parity"]["model.onnx"] <= 1e-4
    assert (exported.path / "tokenizer.json").is_file() and (
        exported.path / "config.json"
    ).is_file()


def test_dynamic_batch_and_sequence(exported: Artifact, tiny_model_dir: object) -> None:
    sess = session(exported.path / "model.onnx")
    tokenizer = AutoTokenizer.from_pretrained(exported.path)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    for texts in (["good"], ["the movie was very dull and boring"] * 5):
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        got = sess.run(None, feeds_for(sess, batch))[0]
        with torch.inference_mode():
            want = model(**batch).logits.numpy()
        assert got.shape == (len(texts), 2)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_parity_check_catches_a_wrong_export(exported: Artifact, tiny_model_dir: object) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batches = parity_batches(tokenizer, ["good film", "awful plot"], 32)
    assert check_parity("export", model, exported.path / "model.onnx", batches, 1e-4) <= 1e-4
    with torch.no_grad():
        model.classifier.bias.add_(0.5)  # the ONNX file no longer matches this model
    with pytest.raises(ExportParityError, match=r"max \|diff\| 0\.5"):
        check_parity("export", model, exported.path / "model.onnx", batches, 1e-4)


def test_opset_option(tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]) -> None:
    ctx = make_ctx("op")
    out = apply(tiny_hf, ExportOnnxConfig(opset=17, optimize=False), ctx)
    assert [v.name for v in out.variants] == ["fp32"]
    model = onnx.load(str(out.path / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
