"""The passes on a CNN and real MNIST digits: train, prune, export with parity, INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compress.artifacts import Artifact
from compress.data import Dataset
from compress.passes.base import PassContext
from compress.tasks import get_task


def _ctx(tmp_path: Path, data: Dataset, name: str) -> PassContext:
    work = tmp_path / name
    work.mkdir()
    return PassContext(
        work_dir=work,
        data=data,
        max_length=32,
        seed=0,
        key=name,
        progress=False,
        task=get_task("image-classification"),
    )


def test_fine_tune_learns_real_digits(
    tmp_path: Path, mnist_slice: Dataset, cnn_artifact: Artifact
) -> None:
    from compress.passes.fine_tune import PASS, FineTuneConfig

    ctx = _ctx(tmp_path, mnist_slice, "ft")
    out = PASS.apply(
        cnn_artifact, FineTuneConfig(epochs=3, lr=3e-3, batch_size=16, min_steps=0), ctx
    )
    assert ctx.metrics["best_val_accuracy"] > 0.5  # chance is 0.1
    assert out.meta["macs_per_example"] > 1e6 and (out.path / "model.safetensors").is_file()


def test_export_and_quantize_a_pruned_cnn(
    tmp_path: Path, mnist_slice: Dataset, cnn_artifact: Artifact
) -> None:
    from compress.passes import export_onnx, prune_channels, quantize
    from compress.quant.qdq_check import check_qdq

    ctx = _ctx(tmp_path, mnist_slice, "prune")
    pruned = prune_channels.PASS.apply(
        cnn_artifact, prune_channels.PruneChannelsConfig(ratio=0.25, importance="magnitude"), ctx
    )
    ctx = _ctx(tmp_path, mnist_slice, "onnx")
    exported = export_onnx.PASS.apply(pruned, export_onnx.ExportOnnxConfig(), ctx)
    assert ctx.metrics["parity"]["model.onnx"] < 1e-4
    assert (exported.path / "preprocessor_config.json").is_file()
    ctx = _ctx(tmp_path, mnist_slice, "int8")
    cfg = quantize.QuantizeConfig(cpu_mode="static", calibration_samples=64)
    quantized = quantize.PASS.apply(exported, cfg, ctx)
    assert [v.target for v in quantized.variants] == ["cpu", "tensorrt"]
    assert check_qdq(quantized.path / "model_int8_qdq.onnx").ok
    accuracy = ctx.metrics["validation_accuracy"]
    assert set(accuracy) == {"model_int8_cpu.onnx", "model_int8_qdq.onnx"}


def test_onnx_export_matches_pytorch_on_real_digits(
    tmp_path: Path, mnist_slice: Dataset, cnn_artifact: Artifact
) -> None:
    import onnxruntime as ort

    from compress.passes import export_onnx

    ctx = _ctx(tmp_path, mnist_slice, "onnx")
    exported = export_onnx.PASS.apply(cnn_artifact, export_onnx.ExportOnnxConfig(), ctx)
    task = ctx.task
    model, processor = task.load(str(cnn_artifact.path), None)
    batch = processor([mnist_slice.test.inputs[i] for i in range(5)])
    sess = ort.InferenceSession(str(exported.path / "model.onnx"))
    got = sess.run(None, {"pixel_values": batch})[0]
    with torch.inference_mode():
        expected = model(torch.from_numpy(batch)).numpy()
    assert got.shape == (5, 10) and np.abs(got - expected).max() < 1e-4


def test_text_only_passes_are_refused_for_images(tmp_path: Path) -> None:
    from compress.errors import RecipeError
    from compress.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "task: image-classification\nmodel: {source: mnist-cnn}\ndata: {source: mnist}\n"
        "passes:\n  - prune_vocab\n"
    )
    with pytest.raises(RecipeError, match="does not serve image-classification"):
        load_recipe(recipe)
    recipe.write_text("task: image-classification\ndata: {source: mnist}\n")
    with pytest.raises(RecipeError, match=r"an image-classification recipe needs model\.source"):
        load_recipe(recipe)
    recipe.write_text(
        "task: image-classification\nmodel: {source: mnist-cnn}\ndata: {source: mnist}\n"
        "passes:\n  - distill: {epochs: 1}\n"
    )
    with pytest.raises(RecipeError, match="student"):
        load_recipe(recipe)


def test_distill_into_a_given_cnn_student(
    tmp_path: Path, mnist_slice: Dataset, cnn_artifact: Artifact
) -> None:
    from compress.passes.distill import PASS, DistillConfig

    ctx = _ctx(tmp_path, mnist_slice, "distill")
    cfg = DistillConfig(student="mnist-cnn", epochs=1, batch_size=32, lr=1e-3)
    out = PASS.apply(cnn_artifact, cfg, ctx)
    assert ctx.metrics["student_layers"] is None and ctx.metrics["steps"] >= 10
    student, processor = ctx.task.load(str(out.path), mnist_slice.label_names)
    assert processor.size == 28 and student.architecture == "mnist-cnn"
