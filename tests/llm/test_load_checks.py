"""A model that did not load right is flagged before any pass runs, and its report says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compress.artifacts.records import validate_report
from compress.benchmark.generation_report import (
    build_generation_report,
    generation_page,
    render_markdown,
)
from compress.benchmark.report_html import render_page
from compress.benchmark.settings import BenchmarkSettings
from compress.data.rotten_tomatoes import load_rows
from compress.llm.load_checks import (
    check_model,
    expected_range,
    round_trip_failures,
    tokenizer_kind,
    tokens_per_char,
    warning_line,
)
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import untyped_fields, write_labelled_csv


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    """Real Rotten Tomatoes snippets, in a fixed random order."""
    texts = load_rows()[0]
    order = np.random.default_rng(0).permutation(len(texts))
    return [texts[i] for i in order[:3200]]


def _byte_level(texts: list[str], merges: bool) -> Any:
    """A byte-level BPE of 4,000 tokens trained on `texts`; without its merges every
    character becomes a token of its own (what a wrong conversion can leave)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=4000, initial_alphabet=alphabet, special_tokens=["<s>"], show_progress=False
    )
    raw.train_from_iterator(texts, trainer)
    if not merges:
        state = json.loads(raw.to_str())
        state["model"]["merges"] = []
        raw = Tokenizer.from_str(json.dumps(state))
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", pad_token="<s>")


def _random_llama(vocab: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


def test_a_byte_level_bpe_without_merges_is_flagged_with_its_tokens_per_char(
    reviews: list[str],
) -> None:
    train, corpus, validation = reviews[:3000], reviews[3000:3200], reviews[3000:3008]
    good, broken = _byte_level(train, merges=True), _byte_level(train, merges=False)
    assert tokenizer_kind(good) == tokenizer_kind(broken) == "byte-level BPE"
    assert expected_range("byte-level BPE", 4000) == (0.18, 0.42)  # small vocab: wider
    assert 0.2 < tokens_per_char(good, corpus)["tokens_per_char"] < 0.35  # 0.27 measured
    model = _random_llama(4000)
    evidence = check_model(model, broken, corpus, validation, max_length=64)
    assert evidence["tokens_per_char"] > 0.95  # one token per character
    line = warning_line(evidence)
    assert line is not None and line.startswith("model looks wrongly loaded: ")
    assert "tokens/char (byte-level BPE expects 0.18-0.42) on 200 corpus texts" in line
    # a random model is near a uniform guess over its vocabulary: flagged too
    assert "near a uniform guess over its 4000 tokens" in line
    assert evidence["round_trip_failures"] == []  # bytes still decode to the text
    right = check_model(model, good, corpus, validation, max_length=64)
    assert not any("tokens/char" in p for p in right["problems"])
    assert right["round_trip_failures"] == []


def test_a_word_level_vocab_that_maps_the_corpus_to_unknown_is_flagged(
    tiny_llama: Path, reviews: list[str]
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)  # 36 words of a synthetic corpus
    assert tokenizer_kind(tokenizer) == "word-level"
    failures = round_trip_failures(tokenizer)
    assert len(failures) == 3 and failures[0][0] == "The capital of France is Paris."
    share = tokens_per_char(tokenizer, reviews[:200])["unknown_share"]
    assert share > 0.5
    from compress.llm.models import load_lm

    model, tokenizer = load_lm(str(tiny_llama))
    evidence = check_model(model, tokenizer, reviews[:200], reviews[200:216], max_length=64)
    found = " | ".join(evidence["problems"])
    assert "of the corpus's tokens are the unknown token" in found
    assert "3 of 3 plain sentences do not survive encode+decode" in found


def _stage(step: str, perplexity: float, accuracy: float, predictions: list[int]) -> dict[str, Any]:
    return {
        "stage": step.split("-", 1)[1],
        "variant": "fp32",
        "step": step,
        "runtime": "torch",
        "precision": "fp32",
        "target": "portable",
        "perplexity": perplexity,
        "perplexity_texts": 40,
        "accuracy": accuracy,
        "n_eval": 4,
        "predictions": predictions,
        "size_bytes": 1_000_000,
        "parameters": 1000,
        "speed": {"ttft_ms": {"16": 2.0}, "decode_tokens_per_s": 100.0, "generated": [1, 2]},
        "peak_memory": None,
    }


def _method(**generation: Any) -> dict[str, Any]:
    settings = BenchmarkSettings.model_validate({"generation": generation})
    return {
        "task": "text-generation",
        "recipe_name": "budget",
        "max_length": 48,
        "threads": 2,
        "cpu": "test CPU",
        "cpu_features": [],
        "versions": {"compress": "0"},
        "date": "2026-12-07",
        "generation": settings.generation.model_dump(mode="json"),
        "prompt": "Review: {text}\nSentiment:",
        "label_words": ["negative", "positive"],
        "majority_class": {"label": "fresh", "accuracy": 0.5, "macro_f1": 0.33, "rows": 4},
    }


def test_the_report_warns_for_a_stage_over_the_budget_and_not_for_one_within() -> None:
    stages = [
        _stage("00-input", 20.0, 0.75, [1, 0, 1, 1]),
        _stage("01-prune", 21.0, 0.75, [1, 0, 1, 1]),  # +5% perplexity, same accuracy
        _stage("02-quantize", 25.0, 0.50, [1, 1, 1, 1]),  # +25%, -25 points
    ]
    report = build_generation_report(stages, _method(prompt_lengths=[16]))
    validate_report(report)
    warnings = report["warnings"]
    assert not any(w.startswith("01-prune") for w in warnings)
    over = [w for w in warnings if w.startswith("02-quantize:fp32 loses more than the budget")]
    assert len(over) == 1 and "+25.0% against the original (budget +10.0%)" in over[0]
    assert "-25.00 points against the original (budget -1.00 points)" in over[0]
    # 50% is no better than always answering 'fresh' (50% of the rows): flagged as well
    assert any(w.startswith("quantize:fp32 scores 50.00%, no better") for w in warnings)
    markdown = render_markdown(report)
    assert markdown.index("**Warning:** 02-quantize") < markdown.index("| stage |")
    assert "always answering 'fresh' scores 50.00% of the 4 scored test rows" in markdown
    assert "up to +10.0% perplexity and 1.00 points of task accuracy" in markdown
    # a looser budget takes the perplexity warning away, not the accuracy one
    loose = build_generation_report(
        stages, _method(prompt_lengths=[16], budget={"perplexity": 0.3, "task_points": 1})
    )
    over = [w for w in loose["warnings"] if "loses more than the budget" in w]
    assert len(over) == 1 and "perplexity" not in over[0] and "task accuracy" in over[0]


RECIPE = """
task: text-generation
model: {{source: {model}}}
data: {{source: {data}, validation_size: 32, test_size: 32, max_length: 32,
        prompt: "Review: {{text}} Sentiment:"}}
passes:
  - export_onnx: {{atol: 0.001}}
benchmark:
  plot: false
  generation: {{prompt_lengths: [8], new_tokens: 4, rounds: 1, perplexity_texts: 16,
               task_samples: 16, peak_memory: false}}
"""


def test_a_run_warns_before_its_passes_and_reports_the_evidence_and_the_baseline(
    tiny_llama: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recipe_file = tmp_path / "recipe.yaml"
    data = write_labelled_csv(tmp_path, 200, 0)
    recipe_file.write_text(RECIPE.format(model=tiny_llama, data=data))
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="compress"):
        run_recipe(load_recipe(recipe_file), out, progress=False)
    said = [r.getMessage() for r in caplog.records]
    flagged = [r for r in caplog.records if r.getMessage().startswith("model looks wrongly")]
    assert len(flagged) == 1 and flagged[0].levelno == logging.WARNING  # one line
    first_pass = next(i for i, text in enumerate(said) if text.startswith("[1/1] export_onnx"))
    assert said.index(flagged[0].getMessage()) < first_pass  # before any pass runs
    report = json.loads((out / "report.json").read_text())
    assert untyped_fields(report) == set()
    checked = report["method"]["load_check"]
    assert checked["tokenizer_kind"] == "word-level" and checked["vocab_size"] == 36
    assert any("near a uniform guess" in p for p in checked["problems"])  # a random model
    assert report["warnings"][0] == checked["warning"] == flagged[0].getMessage()
    majority = report["method"]["majority_class"]
    assert majority["rows"] == 16 and 0.5 <= majority["accuracy"] <= 1
    markdown = (out / "report.md").read_text()
    assert markdown.index("**Warning:** model looks wrongly loaded") < markdown.index("| stage")
    assert "Load check of the input model:" in markdown and "FLAGGED" in markdown
    assert "Majority-class baseline: always answering" in markdown
    page = (out / "report.html").read_text()
    assert page.index("<b>Warning:</b> model looks wrongly loaded") < page.index('id="facts"')
    assert page.count("model looks wrongly loaded") == 1  # an alert, not repeated below
    assert "<dt>Load check</dt><dd>" in page and "<dt>Task baseline</dt>" in page
    assert render_page(generation_page(report, markdown, None)) == page
    # a re-run reuses the input step and says it again, from its manifest
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="compress"):
        run_recipe(load_recipe(recipe_file), out, progress=False, report=False)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [text for text in said if "wrongly" in text] == [checked["warning"]]


@pytest.mark.slow
def test_the_real_smollm2_is_not_flagged_by_its_tokenizer(reviews: list[str]) -> None:
    from compress.llm.models import load_lm, resolve_lm_source

    model, tokenizer = load_lm(resolve_lm_source("smollm2-135m"))
    evidence = check_model(model, tokenizer, reviews[:200], reviews[200:208], max_length=64)
    assert evidence["tokenizer_kind"] == "byte-level BPE"
    assert 0.2 < evidence["tokens_per_char"] < 0.25  # 0.223 measured on 500 reviews
    assert evidence["round_trip_failures"] == []
    assert evidence["unknown_share"] == 0
    assert evidence["bits_per_char"] < 2.2  # ~1.6: a working model
    assert evidence["problems"] == []
