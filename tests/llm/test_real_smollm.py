"""End to end on the REAL offline SmolLM2-135M (from its GGUF wheel) and Rotten Tomatoes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compress.cli import main
from compress.llm.genai import genai_available

pytestmark = pytest.mark.slow

RECIPE = """\
name: smollm-e2e
task: text-generation
data: {source: rotten-tomatoes, max_length: 48, train_samples: 64}
passes:
  - prune: {layers: 26, importance_batches: 4}
  - export_onnx: {atol: 0.002}
  - quantize: {weight_only: {algorithm: hqq, block_size: 32, lm_head_bits: 4}}
benchmark:
  generation: {prompt_lengths: [16], new_tokens: 8, rounds: 1, perplexity_texts: 40,
               task_samples: 40, peak_memory: false}
"""


def test_smollm2_prunes_exports_and_quantizes_to_int4(tmp_path: Path) -> None:
    recipe = tmp_path / "smollm.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    assert main(["run", str(recipe), "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "01-prune" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["num_key_value_heads"]) == (26, 3)
    export = json.loads((out / "02-export_onnx" / "manifest.json").read_text())
    assert export["metrics"]["parity"]["model.onnx"] <= 2e-3  # with and without past
    assert export["metrics"]["parity"]["model_ort.onnx"] <= 2e-3
    assert export["metrics"]["fused_operators"]["RotaryEmbedding"] == 2 * 26
    assert export["metrics"]["fused_operators"]["GroupQueryAttention"] == 26  # one per layer
    stages = {
        f"{s['step']}:{s['variant']}": s
        for s in json.loads((out / "report.json").read_text())["stages"]
    }
    original, pruned = stages["00-input:fp32"], stages["02-export_onnx:fp32"]
    int4 = stages["03-quantize:int4"]
    assert original["parameters"] == 134_515_008  # the dequantized GGUF: 30 layers, tied head
    assert original["size_bytes"] / int4["size_bytes"] > 5  # 26 INT4 layers and one shared table
    # HQQ INT4 costs little perplexity against the FP32 file it came from
    assert int4["perplexity"] < 1.2 * pruned["perplexity"]
    # and decides the zero-shot task like that FP32 file on at least 36 of the 40 reviews (39
    # in a run here); a file answering "positive" to every review would agree on only 35
    agree = np.asarray(int4["predictions"]) == np.asarray(pruned["predictions"])
    assert int4["n_eval"] == pruned["n_eval"] == 40 and agree.mean() >= 0.9
    assert abs(int4["accuracy"] - pruned["accuracy"]) <= 0.1
    if genai_available():
        genai = stages["03-quantize:int4-genai"]
        assert genai["speed"]["generated"] == int4["speed"]["generated"]
