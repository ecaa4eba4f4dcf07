from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact, Variant
from compress.errors import ExportParityError
from compress.passes.base import PassContext
from compress.passes.export_onnx import ExportOnnxConfig, apply
from compress.quant.parity import check_parity, feeds_for, session
from compress.text.tokens import parity_batches
from tests.conftest import build_tiny_classifier, widen_weights


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT classifier with weights drawn wider than BERT's init (`widen_weights`):
    rows of logits differ by more than 0.1, so a 1e-4 tolerance is tight."""
    folder = build_tiny_classifier(tmp_path_factory.mktemp("export-source") / "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    widen_weights(model)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(
    source_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiny_dataset: object
) -> Artifact:
    work = tmp_path_factory.mktemp("export")
    ctx = PassContext(
        work_dir=work, data=tiny_dataset, max_length=32, seed=0, key="x", progress=False
    )  # type: ignore[arg-type]
    src = Artifact("hf", source_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])
    out = apply(src, ExportOnnxConfig(), ctx)
    out.meta["metrics"] = ctx.metrics
    return out


# texts of different lengths: the padded batch exercises the attention mask
TEXTS = [
    "good",
    "the movie was very dull and boring",
    "superb film",
    "the plot is not really fun but the actor was quite great",
    "hated it",
]


def _source_logits(model_dir: Path, batch: dict[str, torch.Tensor]) -> np.ndarray:
    """The logits of the SOURCE PyTorch model, computed here (not read from the pass)."""
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return np.asarray(model(**batch).logits.numpy())


def _assert_matches_source(onnx_file: Path, model_dir: Path, texts: list[str]) -> None:
    """The ONNX file's logits equal the source model's to 1e-4, on a batch whose rows differ
    from one another by far more than that (a constant or shuffled output cannot pass)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    want = _source_logits(model_dir, batch)
    sess = session(onnx_file)
    got = sess.run(None, feeds_for(sess, batch))[0]
    assert got.shape == want.shape == (len(texts), 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    if len(texts) > 1:
        assert np.ptp(want, axis=0).min() > 0.1, "rows too alike to tell apart"


def test_writes_portable_and_cpu_graphs(exported: Artifact, source_dir: Path) -> None:
    """Two files: plain ONNX ops and ONNX Runtime's fused graph, both equal to the source."""
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
    for name in ("model.onnx", "model_ort.onnx"):
        _assert_matches_source(exported.path / name, source_dir, TEXTS)
    assert exported.meta["metrics"]["parity"]["model.onnx"] <= 1e-4
    assert (exported.path / "tokenizer.json").is_file() and (
        exported.path / "config.json"
    ).is_file()


@pytest.mark.parametrize("name", ["model.onnx", "model_ort.onnx"])
def test_dynamic_batch_and_sequence(exported: Artifact, source_dir: Path, name: str) -> None:
    """One file serves batch 1 and 5 at sequence lengths 3 and 14, equal to the source."""
    assert AutoTokenizer.from_pretrained(exported.path)("good").input_ids == (
        AutoTokenizer.from_pretrained(source_dir)("good").input_ids
    )
    for texts in (TEXTS[:1], TEXTS):
        _assert_matches_source(exported.path / name, source_dir, texts)


def test_parity_check_catches_a_wrong_export(exported: Artifact, source_dir: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(source_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    batches = parity_batches(tokenizer, ["good film", "awful plot"], 32)
    assert check_parity("export", model, exported.path / "model.onnx", batches, 1e-4) <= 1e-4
    with torch.no_grad():
        model.classifier.bias.add_(0.5)  # the ONNX file no longer matches this model
    with pytest.raises(ExportParityError, match=r"max \|diff\| 0\.5"):
        check_parity("export", model, exported.path / "model.onnx", batches, 1e-4)


def test_opset_option(source_dir: Path, make_ctx: Callable[[str], PassContext]) -> None:
    """opset: 17 writes an opset-17 file (no optimized copy) equal to the source model."""
    ctx = make_ctx("op")
    source = Artifact("hf", source_dir, "src", [Variant("fp32", "torch", "fp32", "portable")])
    out = apply(source, ExportOnnxConfig(opset=17, optimize=False), ctx)
    assert [v.name for v in out.variants] == ["fp32"]
    model = onnx.load(str(out.path / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    _assert_matches_source(out.path / "model.onnx", source_dir, TEXTS)
