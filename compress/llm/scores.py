"""What the report measures of a causal LM: perplexity, and a task score by label likelihood.

Perplexity: every text is one sequence (BOS added as the tokenizer does, at
most `max_length` tokens); exp of the mean negative log-likelihood of every
token after the first, over all texts. The task score is zero-shot
classification: each example's text goes into the prompt, and the label whose
word (with a leading space) is likeliest after it wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from compress.llm.runtime import LanguageModel


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _padded(rows: list[list[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    import torch

    out: np.ndarray = torch.log_softmax(torch.from_numpy(logits).float(), -1).numpy()
    return out


def perplexity(
    lm: LanguageModel,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 8,
    progress: bool = False,
) -> dict[str, float]:
    """Perplexity over `texts` (one sequence each) and the number of tokens it predicts."""
    rows = [r for r in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    rows = [r for r in rows if len(r) >= 2]
    nll, count = 0.0, 0
    pad = tokenizer.pad_token_id or 0
    for idx in tqdm(
        _batches([len(r) for r in rows], batch_size), "perplexity", disable=not progress
    ):
        ids, mask = _padded([rows[i] for i in idx], pad)
        logp = _log_softmax(lm.logits(ids, mask)[:, :-1])
        picked = np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]
        keep = mask[:, 1:].astype(bool)
        nll -= float(picked[keep].sum())
        count += int(keep.sum())
    if count == 0:
        raise ValueError("no text has two tokens or more: nothing to score")
    return {"perplexity": math.exp(nll / count), "tokens": float(count)}


def prompt_ids(tokenizer: Any, prompt: str, text: str, max_length: int) -> list[int]:
    """The prompt's tokens with `text` in it, the text cut so the prompt's end survives."""
    head, tail = prompt.split("{text}", 1)
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    body = tokenizer(head + text, truncation=True, max_length=max(2, max_length))["input_ids"]
    ids: list[int] = body[: max(1, max_length - len(tail_ids))] + tail_ids
    return ids


def label_scores(
    lm: LanguageModel,
    tokenizer: Any,
    texts: Sequence[str],
    prompt: str,
    words: Sequence[str],
    max_length: int,
    batch_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Log-likelihood of each label word after each prompt: [examples, labels]."""
    word_ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words]
    prompts = [prompt_ids(tokenizer, prompt, t, max_length) for t in texts]
    pad = tokenizer.pad_token_id or 0
    scores = np.zeros((len(prompts), len(words)), dtype=np.float64)
    single = all(len(w) == 1 for w in word_ids)
    # one word token each: one forward per prompt; else one per prompt and label
    jobs = (
        [(i, None) for i in range(len(prompts))]
        if single
        else [(i, k) for i in range(len(prompts)) for k in range(len(words))]
    )
    seqs = [prompts[i] + (word_ids[k] if k is not None else []) for i, k in jobs]
    bar = tqdm(total=len(jobs), desc="task score", disable=not progress)
    for idx in _batches([len(s) for s in seqs], batch_size):
        ids, mask = _padded([seqs[j] for j in idx], pad)
        logp = _log_softmax(lm.logits(ids, mask))
        for row, j in enumerate(idx):
            i, k = jobs[j]
            n = len(prompts[i])
            if k is None:
                scores[i] = [logp[row, n - 1, w[0]] for w in word_ids]
            else:
                targets = word_ids[k]
                scores[i, k] = sum(logp[row, n - 1 + t, tok] for t, tok in enumerate(targets))
        bar.update(len(idx))
    bar.close()
    return scores


def task_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float((scores.argmax(-1) == labels).mean())
