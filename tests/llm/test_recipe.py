"""A text-generation recipe end to end on a tiny Llama, and the recipe-level refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compress.errors import ModelLoadError, RecipeError
from compress.llm.genai import genai_available
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import untyped_fields, write_labelled_csv

RECIPE = """
task: text-generation
model: {{source: {model}}}
data: {{source: {data}, validation_size: 32, test_size: 32, max_length: 32,
        prompt: "Review: {{text}} Sentiment:"}}
passes:
  - fine_tune: {{method: lora, lora_r: 4, epochs: 1, min_steps: 12, batch_size: 8, lr: 0.003,
                 examples: prompted}}
  - prune: {{layers: 3, ffn: 0.5, heads: 0.5, importance_batches: 2,
             recovery: {{epochs: 1, batch_size: 8}}}}
  - export_onnx: {{atol: 0.001}}
  - quantize: {{weight_only: {{block_size: 16, algorithm: scale_estimation, awq: true,
                               calibration_samples: 16}}}}
  - bundle: {{target: x86-cpu}}
benchmark:
  generation: {{prompt_lengths: [8, 16], new_tokens: 6, rounds: 2, perplexity_texts: 16,
               task_samples: 16}}
"""


def _write(tmp_path: Path, model: Path, passes: str | None = None) -> Path:
    data = write_labelled_csv(tmp_path, 300, 0)
    text = RECIPE.format(model=model, data=data)
    if passes is not None:
        text = (
            text.split("passes:")[0]
            + "passes:\n"
            + passes
            + "\nbenchmark:"
            + text.split("benchmark:")[1]
        )
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_a_generation_recipe_runs_every_pass_and_reports_against_the_original(
    tiny_llama: Path, tmp_path: Path
) -> None:
    recipe = load_recipe(_write(tmp_path, tiny_llama))
    out = tmp_path / "run"
    results = run_recipe(recipe, out, progress=False)
    assert [r.folder.name for r in results] == [
        "00-input", "01-fine_tune", "02-prune", "03-export_onnx", "04-quantize", "05-bundle",
    ]  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert untyped_fields(report) == set()  # every figure is in the published schema
    stages = {f"{s['step']}:{s['variant']}": s for s in report["stages"]}
    expected = ["01-fine_tune:fp32", "02-prune:fp32", "03-export_onnx:fp32"]
    expected += ["03-export_onnx:fp32-ort", "04-quantize:int4"]
    if genai_available():  # the same INT4 file, served by onnxruntime-genai's runtime
        expected.append("04-quantize:int4-genai")
        genai, plain = stages["04-quantize:int4-genai"], stages["04-quantize:int4"]
        assert genai["speed"]["generated"] == plain["speed"]["generated"]
        assert genai["perplexity"] == pytest.approx(plain["perplexity"], rel=1e-6)
    assert list(stages) == expected
    original, int4 = stages["01-fine_tune:fp32"], stages["04-quantize:int4"]
    assert original["vs_original"]["size_x_smaller"] == pytest.approx(1.0)
    exported = stages["03-export_onnx:fp32"]
    assert int4["size_bytes"] < exported["size_bytes"]  # a tiny graph is mostly not weights
    # the FP32 exports are the pruned model in another runtime: measured alike, on the same
    # texts. This tiny model is close to uniform (perplexity ~34 over 36 words), so scoring
    # one text fewer moves its perplexity by only ~7e-4: hence a 1e-4 tolerance
    pruned_torch = stages["02-prune:fp32"]
    for onnx_stage in (exported, stages["03-export_onnx:fp32-ort"]):
        assert onnx_stage["perplexity"] == pytest.approx(pruned_torch["perplexity"], rel=1e-4)
        same = np.asarray(onnx_stage["predictions"]) == np.asarray(pruned_torch["predictions"])
        assert same.sum() >= 15  # at most one near-tie may flip
    # the task score: label-word predictions on the first 16 test rows, scored against the
    # labels the data source gives those rows (loaded here)
    from compress.data.corpus import load_corpus

    labels = load_corpus(recipe.doc.data).test.labels[:16]
    for name, stage in stages.items():
        predictions = np.asarray(stage["predictions"])
        assert stage["n_eval"] == 16 and predictions.shape == (16,), name
        assert stage["accuracy"] == pytest.approx(float((predictions == labels).mean())), name
        assert stage["perplexity"] > 1
        assert set(stage["speed"]["ttft_ms"]) == {"8", "16"}
        assert stage["speed"]["decode_tokens_per_s"] > 0 and stage["peak_memory"]["peak_rss_mb"] > 0
    pruned = json.loads((out / "02-prune" / "config.json").read_text())
    assert (pruned["num_hidden_layers"], pruned["num_key_value_heads"]) == (3, 1)
    assert (pruned["intermediate_size"], pruned["num_attention_heads"]) == (64, 2)
    assert "| 04-quantize:int4 | onnxruntime | int4 |" in (out / "report.md").read_text()
    manifest = results[4].manifest["metrics"]
    assert set(manifest["validation_perplexity"]) == {"fp32", "int4"}
    layers = manifest["weight_only"]["groups"]["layers"]
    assert layers["algorithm"] == "awq+scale_estimation" and layers["nodes"] == 3 * 5
    assert manifest["weight_only"]["calibration_sequences"] == 16  # training texts, seeded
    # the bundle's generate.py runs on its own and decodes what the runtime decodes
    bundle = out / "05-bundle" / "run-x86-cpu"
    files = json.loads((bundle / "manifest.json").read_text())
    assert files["model"]["file"] == "model_int4.onnx" and files["context_length"] == 256
    script = [sys.executable, str(bundle / "generate.py")]
    done = subprocess.run(
        [*script, "the movie was", "--max-new-tokens", "5", "--ids"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    from compress.llm.models import load_lm_tokenizer
    from compress.llm.runtime import OrtLM

    tokenizer = load_lm_tokenizer(out / "04-quantize")
    prompt = tokenizer("the movie was").input_ids
    expected = OrtLM(out / "04-quantize" / "model_int4.onnx").generate(prompt, 5).tokens
    eos = files["eos_token_ids"]
    got = [int(t) for t in done.stdout.split()]
    assert got == expected[: len(got)] and (len(got) == 5 or got[-1] in eos)
    too_long = subprocess.run(
        [sys.executable, str(bundle / "generate.py"), "good " * 300], capture_output=True, text=True
    )
    assert too_long.returncode == 2 and "more than the model's context of 256" in too_long.stderr
    # a second run reuses every step, and the saved resolved recipe is a valid recipe
    load_recipe(out / "recipe.resolved.yaml")
    again = run_recipe(load_recipe(tmp_path / "recipe.yaml"), out, progress=False)
    assert [r.manifest["seconds"] for r in again[1:4]] == [
        r.manifest["seconds"] for r in results[1:4]
    ]


@pytest.mark.parametrize(
    ("passes", "message"),
    [
        ("  - prune_vocab", "'prune_vocab' does not serve text-generation models"),
        ("  - qat", "'qat' does not serve text-generation models"),
        (
            "  - export_onnx\n  - quantize: {cpu_mode: static}",
            "cpu_mode is an INT8 classification option",
        ),
        ("  - prune: {importance: magnitude, ffn: 0.5}", "importance: text-generation prunes"),
        (
            "  - fine_tune: {examples: text, method: full}\n  - distill: {hidden_weight: 1.0}",
            "hidden_weight",
        ),
    ],
)
def test_options_a_generation_recipe_cannot_use_are_refused_before_loading(
    tiny_llama: Path, tmp_path: Path, passes: str, message: str
) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(_write(tmp_path, tiny_llama, passes))
    assert message in str(err.value) and str(err.value).startswith(str(tmp_path / "recipe.yaml"))


def test_an_encoder_in_a_generation_recipe_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    """An encoder as a text-generation model is a ModelLoadError at validation."""
    with pytest.raises(ModelLoadError, match="has no causal language-model head"):
        load_recipe(_write(tmp_path, tiny_model_dir, "  - export_onnx"))


def test_examples_prompted_is_a_generation_option(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"model: {{source: {tiny_model_dir}}}\npasses:\n  - fine_tune: {{examples: prompted}}\n"
    )
    with pytest.raises(RecipeError, match="examples is a text-generation option"):
        load_recipe(path)


def test_tensorrt_builds_the_decoder_with_its_kv_cache(tiny_llama: Path, tmp_path: Path) -> None:
    """The decoder engine holds the export's inputs and outputs (every layer's KV cache, empty
    at the first step) in FP16 kernels."""
    pytest.importorskip("tensorrt_rtx")
    passes = (
        "  - export_onnx: {atol: 0.001}\n"
        f"  - tensorrt: {{precision: fp16, cache_dir: {tmp_path / 'engines'}}}"
    )
    results = run_recipe(load_recipe(_write(tmp_path, tiny_llama, passes)), tmp_path / "run")
    build = json.loads((results[2].folder / "build.json").read_text())
    assert build["parser_errors"] == 0 and (results[2].folder / "model_fp16.engine").is_file()
    past = build["inputs"]["past_key_values.0.key"]
    assert past["min"][2] == 0 and past["max"][2] == 32  # the first step: an empty cache
    # the engine holds the exported decoder's I/O (every layer's cache) in FP16 kernels
    import onnx

    graph = onnx.load(str(results[1].folder / "model.onnx"), load_external_data=False).graph
    assert list(build["inputs"]) == [t.name for t in graph.input]
    assert build["outputs"] == [t.name for t in graph.output]
    assert {f"past_key_values.{i}.value" for i in range(4)} <= set(build["inputs"])
    engine = (results[2].folder / "model_fp16.engine").read_bytes()
    assert all(name.encode() in engine for name in [*build["inputs"], *build["outputs"]])
    assert engine.count(b"__myln_half __v") > 50


def test_tensorrt_after_int4_is_refused_before_anything_runs(
    tiny_llama: Path, tmp_path: Path
) -> None:
    passes = "  - export_onnx\n  - quantize\n  - tensorrt: {precision: fp16}"
    with pytest.raises(RecipeError, match="builds the portable FP32 ONNX file"):
        load_recipe(_write(tmp_path, tiny_llama, passes))


def test_distill_trains_a_layer_subset_of_the_teacher(tiny_llama: Path, tmp_path: Path) -> None:
    passes = "  - distill: {layers: 2, epochs: 1, batch_size: 8, temperature: 1.0}\n  - export_onnx"
    results = run_recipe(load_recipe(_write(tmp_path, tiny_llama, passes)), tmp_path / "run")
    config = json.loads((results[1].folder / "config.json").read_text())
    metrics = results[1].manifest["metrics"]
    assert config["num_hidden_layers"] == 2 and metrics["student_layers"] == [0, 2]
    assert metrics["best_val_perplexity"] > 1 and len(metrics["epochs"]) == 1
    assert results[2].manifest["metrics"]["parity"]["model.onnx"] < 1e-3
