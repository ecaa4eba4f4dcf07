"""Every supported decoder family through prune, export_onnx, INT4 (cpu and tensorrt) and the
report, on tiny config-built models; and the refusal of a family compress does not support."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compress.llm.families import SUPPORTED
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv
from tests.llm_fixtures import FAMILIES, WINDOW, build_tiny_llama

RECIPE = """
task: text-generation
model: {{source: {model}}}
data: {{source: {data}, validation_size: 16, test_size: 16, max_length: 32,
        prompt: "Review: {{text}} Sentiment:"}}
passes:
  - prune: {{layers: 3, ffn: 0.5, heads: 0.5, importance_batches: 2}}
  - export_onnx: {{atol: 0.001}}
  - quantize: {{weight_only: {{targets: [cpu, tensorrt], block_size: 16}}}}
benchmark:
  generation: {{prompt_lengths: [8], new_tokens: 2, rounds: 1, perplexity_texts: 8,
               task_samples: 8, peak_memory: false}}
"""
# family (fixture), its sliding window, and why GroupQueryAttention cannot take its attention
# (None: the rewrite takes every layer: sliding windows, Gemma 2's softcapping and SmolLM3's
# layers without rotary included)
CASES = {
    "llama": ("llama", None, None),
    "qwen2": ("qwen2", None, None),
    "qwen3": ("qwen3", None, "normalises Q and K per head"),
    "mistral-window": ("mistral", WINDOW, None),
    "phi3": ("phi3", None, "one fused qkv_proj"),
    "gemma2": ("gemma2", None, None),
    "gemma3_text": ("gemma3_text", None, "normalises Q and K per head"),
    "smollm3": ("smollm3", None, None),
}


def test_every_supported_family_has_a_case() -> None:
    assert set(SUPPORTED) == set(FAMILIES) == {family for family, _, _ in CASES.values()}


@pytest.fixture(scope="module", params=list(CASES))
def family_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    family, window, why = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model = build_tiny_llama(root / "model", family=family, sliding_window=window)
    data = write_labelled_csv(root, 200, 0)
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(model=model, data=data))
    out = root / "run"
    results = run_recipe(load_recipe(recipe), out, progress=False)
    return family, why, out, results


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_pruning_removes_layers_neurons_and_kv_groups(family_run: Any) -> None:
    family, _, out, results = family_run
    steps = ["00-input", "01-prune", "02-export_onnx", "03-quantize"]
    assert [r.folder.name for r in results] == steps
    config = json.loads((out / "01-prune" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["intermediate_size"]) == (3, 64)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (2, 1)
    for per_layer in ("layer_types", "no_rope_layers"):  # one entry per kept layer
        assert per_layer not in config or len(config[per_layer]) == 3
    weights = _weights(out / "01-prune")
    layers = {int(k.split(".")[2]) for k in weights if k.startswith("model.layers.")}
    assert layers == {0, 1, 2}
    # hidden 64; 2 query heads and 1 KV head of 16; 64 FFN neurons
    assert weights["model.layers.0.self_attn.o_proj.weight"].shape == (64, 32)
    assert weights["model.layers.2.mlp.down_proj.weight"].shape == (64, 64)
    if family == "phi3":  # fused: [Q | K | V] and [gate | up] rows
        assert weights["model.layers.1.self_attn.qkv_proj.weight"].shape == (32 + 16 + 16, 64)
        assert weights["model.layers.1.mlp.gate_up_proj.weight"].shape == (2 * 64, 64)
    else:
        assert weights["model.layers.1.self_attn.k_proj.weight"].shape == (16, 64)
        assert weights["model.layers.1.mlp.up_proj.weight"].shape == (64, 64)
    before, after = results[1].manifest["metrics"]["parameters"]
    assert after < before / 2


def _gqa(out: Path, attribute: str) -> list[int]:
    """`attribute` of each GroupQueryAttention node of `model_ort.onnx`, in layer order."""
    import onnx
    from onnx import helper

    graph = onnx.load(str(out / "02-export_onnx" / "model_ort.onnx")).graph
    return [
        next(helper.get_attribute_value(a) for a in n.attribute if a.name == attribute)
        for n in graph.node
        if n.op_type == "GroupQueryAttention"
    ]


def test_both_exports_pass_both_parity_checks(family_run: Any) -> None:
    family, why, out, results = family_run
    metrics = results[2].manifest["metrics"]
    assert set(metrics["parity_detail"]) == {"model.onnx", "model_ort.onnx"}
    for diffs in metrics["parity_detail"].values():
        assert set(diffs) == {"without past", "with past"}
        assert all(0 <= d <= 1e-3 for d in diffs.values())
    attention = metrics["attention"]["model_ort.onnx"]
    if why is None:
        assert attention == "GroupQueryAttention"
        assert metrics["fused_operators"]["GroupQueryAttention"] == 3
        config = json.loads((out / "01-prune" / "config.json").read_text())
        window = config.get("sliding_window") or -1
        kinds = config.get("layer_types") or ["sliding_attention"] * 3
        expected = [window if kind == "sliding_attention" else -1 for kind in kinds]
        assert _gqa(out, "local_window_size") == expected  # parity (~20-token texts) proves them
        if family in ("mistral", "gemma2"):
            assert window == WINDOW
        assert _gqa(out, "do_rotary") == config.get("no_rope_layers", [1, 1, 1])
        if family == "smollm3":
            assert 0 in config["no_rope_layers"]  # the pruned model kept a layer without rotary
    else:  # optimum's attention kept, and the manifest says why
        assert attention.startswith("optimum's attention: ") and why in attention
        assert "GroupQueryAttention" not in metrics["fused_operators"]


def test_both_int4_files_are_written_and_scored(family_run: Any) -> None:
    _, _, out, results = family_run
    metrics = results[3].manifest["metrics"]
    assert (out / "03-quantize" / "model_int4.onnx").is_file()
    assert (out / "03-quantize" / "model_int4_qdq.onnx").is_file()
    assert metrics["weight_only_tensorrt"]["form"]["ok"]
    groups = metrics["weight_only"]["groups"]
    assert groups["layers"]["nodes"] >= 3 * 4 and groups["lm_head"]["nodes"] == 1
    perplexity = metrics["validation_perplexity"]
    for label in ("int4", "int4-qdq"):  # close to the FP32 file: the head was found and kept
        assert perplexity[label] == pytest.approx(perplexity["fp32"], rel=0.1)
    report = json.loads((out / "report.json").read_text())
    stages = {f"{s['step']}:{s['variant']}": s for s in report["stages"]}
    for name in ("03-quantize:int4", "03-quantize:int4-qdq"):
        assert math.isfinite(stages[name]["perplexity"]) and stages[name]["perplexity"] > 1
        assert stages[name]["n_eval"] == 8
    assert stages["03-quantize:int4-qdq"]["target"] == "tensorrt"


@pytest.mark.parametrize("family", FAMILIES)
def test_width_pruning_keeps_what_the_kept_neurons_and_groups_compute(
    family: str, tmp_path: Path
) -> None:
    """Neurons and a KV group whose outputs are zeroed contribute nothing: removing them
    leaves the logits unchanged, so every (fused or separate) matrix was sliced alike."""
    import torch
    from transformers import AutoModelForCausalLM

    from compress.llm import pruning

    model = AutoModelForCausalLM.from_pretrained(
        build_tiny_llama(tmp_path / "m", layers=2, family=family), attn_implementation="eager"
    ).eval()
    dropped_neurons = torch.arange(0, 128, 2)  # every other FFN neuron
    ffn_scores = [torch.ones(128) for _ in range(2)]
    group_scores = [torch.tensor([1.0, 0.0]) for _ in range(2)]  # drop KV group 1
    with torch.no_grad():
        for layer, scores in zip(pruning.decoder_layers(model), ffn_scores, strict=True):
            layer.mlp.down_proj.weight[:, dropped_neurons] = 0
            scores[dropped_neurons] = 0
            layer.self_attn.o_proj.weight[:, 32:] = 0  # query heads 2 and 3 read KV head 1
    ids = torch.tensor([[1, 5, 9, 12, 20, 7, 30, 31, 6, 8, 11, 14]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        pruning.prune_ffn(model, ffn_scores, 64)
        pruning.prune_kv_groups(model, group_scores, 1)
        got = model(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    model.save_pretrained(tmp_path / "pruned")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned", attn_implementation="eager")
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("model_type", "architecture"),
    [("gpt2", "GPT2LMHeadModel"), ("falcon", "FalconForCausalLM"), ("florp", "FlorpForCausalLM")],
)
def test_validate_refuses_an_unsupported_family_in_one_line(
    tmp_path: Path, model_type: str, architecture: str
) -> None:
    """Refused from config.json alone: the folder holds no weights to load."""
    folder = tmp_path / "model"
    folder.mkdir()
    config = {"model_type": model_type, "architectures": [architecture]}
    (folder / "config.json").write_text(json.dumps(config))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"task: text-generation\nmodel: {{source: {folder}}}\npasses:\n  - export_onnx\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "compress", "validate", str(recipe)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"model family '{model_type}' is not supported" in lines[0]
    assert f"supported: {', '.join(SUPPORTED)}" in lines[0]


def test_gemma2_loads_with_the_attention_that_applies_its_softcapping(tmp_path: Path) -> None:
    """SDPA ignores `attn_logit_softcapping`; the eager attention applies it (and the export
    and GroupQueryAttention's `softcap` follow it)."""
    import torch
    from transformers import AutoModelForCausalLM

    from compress.llm.models import load_lm

    folder = build_tiny_llama(tmp_path / "m", layers=2, family="gemma2")
    model, _ = load_lm(str(folder))
    assert model.config._attn_implementation == "eager"
    sdpa = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa").eval()
    ids = torch.tensor([[1, 5, 9, 12, 20, 7, 30, 31, 6, 8, 11, 14]])
    with torch.no_grad():
        gap = (model(input_ids=ids).logits - sdpa(input_ids=ids).logits).abs().max()
    assert gap > 1e-3  # the tiny model's caps bite
