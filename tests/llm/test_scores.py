"""Perplexity and the label-likelihood task score, in PyTorch and ONNX Runtime."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import UserError
from compress.llm.export import export_with_past, lm_parity
from compress.llm.models import load_lm
from compress.llm.runtime import OrtLM, TorchLM
from compress.llm.scores import label_scores, perplexity, prompt_ids

TEXTS = ["the movie was good and fun", "a boring film", "the plot is not really great but fine"]


@pytest.fixture(scope="module")
def exported(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = load_lm(str(tiny_llama))
    return export_with_past(model, tokenizer, tmp_path_factory.mktemp("export"), 18)


def test_perplexity_is_the_models_own_loss(tiny_llama: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    ids = torch.tensor([tokenizer(TEXTS[0]).input_ids])
    with torch.inference_mode():
        loss = float(model(ids, labels=ids).loss)
    figures = perplexity(TorchLM(model), tokenizer, TEXTS[:1], 64)
    assert figures["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert figures["tokens"] == ids.shape[1] - 1
    batched = perplexity(TorchLM(model), tokenizer, TEXTS, 64, batch_size=2)["perplexity"]
    alone = [perplexity(TorchLM(model), tokenizer, [t], 64) for t in TEXTS]
    mean_nll = sum(math.log(a["perplexity"]) * a["tokens"] for a in alone) / sum(
        a["tokens"] for a in alone
    )
    assert batched == pytest.approx(math.exp(mean_nll), rel=1e-5)  # padding changes nothing


def test_the_export_matches_pytorch_with_and_without_past(tiny_llama: Path, exported: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    diffs = lm_parity(model, exported, tokenizer(TEXTS)["input_ids"], 1e-4)
    assert set(diffs) == {"without past", "with past"}
    torch_lm, ort_lm = TorchLM(model), OrtLM(exported)
    prompt = tokenizer(TEXTS[2]).input_ids
    assert torch_lm.generate(prompt, 8).tokens == ort_lm.generate(prompt, 8).tokens
    ppl = [perplexity(lm, tokenizer, TEXTS, 64)["perplexity"] for lm in (torch_lm, ort_lm)]
    assert ppl[0] == pytest.approx(ppl[1], rel=1e-4)


def test_a_prompt_longer_than_the_context_is_refused(exported: Path) -> None:
    with pytest.raises(UserError, match="longer than the model's context \\(256 tokens"):
        OrtLM(exported).generate([1] * 250, 10)


def test_label_scores_are_the_label_words_log_likelihood(tiny_llama: Path) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    prompt = "Review: {text} Sentiment:"
    scores = label_scores(TorchLM(model), tokenizer, TEXTS, prompt, ["neg", "pos"], 64)
    for row, text in enumerate(TEXTS):
        ids = prompt_ids(tokenizer, prompt, text, 64)
        with torch.inference_mode():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)
        for k, word in enumerate(["neg", "pos"]):
            token = tokenizer(" " + word, add_special_tokens=False).input_ids[0]
            assert scores[row, k] == pytest.approx(float(logp[token]), abs=1e-4)
    # two-token words take the slow path: the sum of both tokens' log-probabilities
    two = label_scores(TorchLM(model), tokenizer, TEXTS[:1], prompt, ["not good", "very good"], 64)
    ids = prompt_ids(tokenizer, prompt, TEXTS[0], 64)
    words = [tokenizer(" not good", add_special_tokens=False).input_ids]
    with torch.inference_mode():
        logp = torch.log_softmax(model(torch.tensor([ids + words[0]])).logits[0], -1)
    expected = float(logp[len(ids) - 1, words[0][0]] + logp[len(ids), words[0][1]])
    assert two[0, 0] == pytest.approx(expected, abs=1e-4)
    assert np.isfinite(two).all()


def test_a_long_text_is_cut_so_the_prompt_end_survives(tiny_llama: Path) -> None:
    _, tokenizer = load_lm(str(tiny_llama))
    ids = prompt_ids(tokenizer, "Review: {text} Sentiment:", " ".join(["good"] * 100), 16)
    assert len(ids) == 16
    assert ids[-1] == tokenizer.convert_tokens_to_ids("Sentiment:")
