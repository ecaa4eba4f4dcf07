"""End to end on the REAL offline assets: MiniLM-L6 and Rotten Tomatoes (a slice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.cli import main
from compress.quant.qdq_check import check_qdq

pytestmark = pytest.mark.slow

RECIPE = """\
name: e2e
model: {source: minilm-l6}
data: {source: rotten-tomatoes, max_length: 48, validation_size: 100, test_size: 200,
       train_samples: 400}
passes:
  - fine_tune: {epochs: 1, batch_size: 16, lr: 2.0e-4, warmup_ratio: 0.1, min_steps: 0}
  - distill: {layers: 3, epochs: 1, batch_size: 16, lr: 2.0e-4}
  - export_onnx: {atol: 1.0e-4}
  - quantize: {calibration_samples: 32}
benchmark: {batch_sizes: [1], sequence_length: 32, warmup: 2, repetitions: 10, plot: true}
"""


def test_flagship_shape_on_real_model_and_data(tmp_path: Path) -> None:
    recipe = tmp_path / "e2e.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0

    for step in ("00-input", "01-fine_tune", "02-distill", "03-export_onnx", "04-quantize"):
        assert (out / step / "manifest.json").is_file(), step
    export = json.loads((out / "03-export_onnx" / "manifest.json").read_text())
    assert export["metrics"]["parity"]["model.onnx"] <= 1e-4
    assert export["metrics"]["parity"]["model_ort.onnx"] <= 1e-4
    assert export["metrics"]["fused_operators"]["Attention"] == 3
    assert check_qdq(out / "04-quantize" / "model_int8_qdq.onnx").ok

    report = json.loads((out / "report.json").read_text())
    by_name = {(s["stage"], s["variant"]): s for s in report["stages"]}
    original = report["stages"][0]
    assert (original["stage"], original["runtime"]) == ("fine_tune", "torch")
    assert original["n_eval"] == 200
    # a real fine-tune of a real encoder on real reviews learns far above chance
    assert original["accuracy"] >= 0.65
    final = by_name[("quantize", "int8-dynamic")]
    assert final["parameters"] < 0.8 * original["parameters"]
    assert final["vs_original"]["size_ratio"] > 3.5  # 3 of 6 layers and INT8 weights
    assert final["accuracy"] >= 0.6
    # ONNX FP32 of the student predicts like the PyTorch student
    student = by_name[("distill", "fp32")]
    onnx_fp32 = by_name[("export_onnx", "fp32")]
    assert abs(student["accuracy"] - onnx_fp32["accuracy"]) <= 0.01
    assert (out / "report.md").is_file() and (out / "report.png").stat().st_size > 1000
