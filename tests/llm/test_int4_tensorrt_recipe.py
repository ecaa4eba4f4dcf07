"""A text-generation recipe with the weight-only INT4 file for TensorRT, end to end: quantize
writes it beside the CPU file, the report scores it exactly, TensorRT-RTX builds its engine,
and an RTX bundle carries it with the script that builds the engine on the device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from compress.errors import RecipeError
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv

RECIPE = """
task: text-generation
model: {{source: {model}}}
data: {{source: {data}, validation_size: 32, test_size: 32, max_length: 32,
        prompt: "Review: {{text}} Sentiment:"}}
passes:
{passes}
benchmark:
  generation: {{prompt_lengths: [8, 16], new_tokens: 6, rounds: 1, perplexity_texts: 16,
               task_samples: 16, peak_memory: false}}
"""
QUANTIZE = "  - quantize: {weight_only: {block_size: 16, targets: [cpu, tensorrt]}}\n"


def _write(tmp_path: Path, model: Path, passes: str) -> Path:
    data = write_labelled_csv(tmp_path, 300, 0)
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(model=model, data=data, passes=passes.rstrip("\n")))
    return path


@pytest.mark.tensorrt
def test_the_tensorrt_int4_file_is_scored_built_and_bundled(
    tiny_llama: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX builds engines without a GPU")
    passes = (
        "  - export_onnx: {atol: 0.001}\n"
        + QUANTIZE
        + f"  - tensorrt: {{precision: int4, cache_dir: {tmp_path / 'engines'}}}\n"
        + "  - bundle: {target: rtx-4090}\n"
    )
    recipe = load_recipe(_write(tmp_path, tiny_llama, passes))
    out = tmp_path / "run"
    results = run_recipe(recipe, out, progress=False)
    quantized, engine_step = results[2], results[3]
    metrics = quantized.manifest["metrics"]
    assert set(metrics["validation_perplexity"]) == {"fp32", "int4", "int4-qdq"}
    assert metrics["weight_only_tensorrt"]["form"]["ok"]
    # the report scores the TensorRT file as a stage of its own, on its exact graph
    report = json.loads((out / "report.json").read_text())
    stages = {f"{s['step']}:{s['variant']}": s for s in report["stages"]}
    cpu, qdq = stages["02-quantize:int4"], stages["02-quantize:int4-qdq"]
    assert qdq["target"] == "tensorrt" and qdq["precision"] == "int4"
    from compress.data.corpus import load_corpus
    from compress.llm.models import load_lm_tokenizer
    from compress.llm.runtime import OrtLM
    from compress.llm.scores import perplexity

    texts = load_corpus(recipe.doc.data).test.texts[:16]
    tokenizer = load_lm_tokenizer(quantized.folder)
    exact = OrtLM(quantized.folder / "model_int4_qdq.onnx", exact=True)
    assert qdq["perplexity"] == pytest.approx(
        perplexity(exact, tokenizer, texts, 32)["perplexity"], rel=1e-9
    )
    assert qdq["perplexity"] == pytest.approx(cpu["perplexity"], rel=0.05)
    assert qdq["n_eval"] == 16 and 0 <= qdq["accuracy"] <= 1
    # the engine, built by TensorRT-RTX from that file
    build = json.loads((engine_step.folder / "build.json").read_text())
    assert build["precision"] == "int4" and build["onnx"] == "model_int4_qdq.onnx"
    assert (engine_step.folder / "model_int4.engine").stat().st_size == build["engine_bytes"]
    # the RTX bundle carries the file and builds its engine with its own script
    bundle = out / "04-bundle" / "run-rtx-4090"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"]["file"] == "model_int4_qdq.onnx"
    assert manifest["engine"]["precision"] == "int4" and manifest["engine"]["sequence"][2] == 32
    assert {"build_engine.py", "trt_core.py", "build_engine.sh", "generate.py"} <= {
        p.name for p in bundle.iterdir()
    }
    assert "--fp16" in (bundle / "build_engine.sh").read_text()
    done = subprocess.run(
        [sys.executable, "build_engine.py", "--backend", "tensorrt_rtx"],
        cwd=bundle, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    built = json.loads((bundle / "build.json").read_text())
    assert built["precision"] == "int4" and built["compute_capabilities"] == ["8.9"]
    assert (bundle / "model.engine").stat().st_size == built["engine_bytes"] > 0
    # ONNX Runtime runs the same file with the bundle's generate.py
    done = subprocess.run(
        [sys.executable, "generate.py", "the movie was", "--max-new-tokens", "3", "--ids"],
        cwd=bundle, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and len(done.stdout.split()) >= 1, done.stderr


@pytest.mark.parametrize(
    ("passes", "message"),
    [
        (
            "  - export_onnx\n  - quantize\n  - tensorrt: {precision: int4}",
            "builds the weight-only INT4 file for TensorRT",
        ),
        (
            "  - export_onnx\n  - quantize: {weight_only: {targets: [tensorrt], algorithm: hqq}}",
            "hqq fits float zero points",
        ),
        (
            "  - export_onnx\n  - quantize: {weight_only: {targets: [cpu, cpu]}}",
            "targets must not repeat",
        ),
    ],
)
def test_tensorrt_int4_mistakes_are_refused_before_anything_runs(
    tiny_llama: Path, tmp_path: Path, passes: str, message: str
) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, tiny_llama, passes))
