"""What the passes that train causal LMs share: their data view and their validation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from compress.data import Split
from compress.errors import UserError
from compress.passkit.context import PassContext
from compress.passkit.training import LossFn, TrainConfig, Validator, train

Examples = Literal["text", "prompted"]
Fit = Callable[[str, str], str]
VALIDATION_TEXTS = 200  # validation perplexity after each epoch reads this many texts


def prompted(
    split: Split, prompt: str, words: list[str], end: str = "", fit: Fit | None = None
) -> Split:
    """Each text as the task asks it, answered: the prompt, then the label's word, then `end`
    (the model's end-of-text token, so that a tuned model stops after its answer). `fit`
    shortens a text so that its whole example, answer and end included, fits the context."""
    texts = []
    for text, label in zip(split.texts, split.labels, strict=True):
        answer = " " + words[int(label)] + end
        if fit is not None:
            text = fit(text, prompt.replace("{text}", "") + answer)
        texts.append(prompt.replace("{text}", text) + answer)
    return Split(texts, split.labels)


def end_of_text(tokenizer: Any, config: Any) -> str:
    """The token that ends a generation: the first of the model's own `eos_token_id`s (what
    generation and the bundle's generate.py stop on), else the tokenizer's end of text."""
    eos = getattr(config, "eos_token_id", None)
    first = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(first, int) and 0 <= first < len(tokenizer):
        return str(tokenizer.convert_ids_to_tokens(first))
    return str(tokenizer.eos_token or "")


def text_fitter(tokenizer: Any, max_length: int) -> Fit:
    """`fit(text, rest)`: `text` cut (in tokens, at its end) so that the tokenizer's encoding of
    the text with `rest` stays within `max_length` tokens, special tokens included."""

    def fit(text: str, rest: str) -> str:
        room = max_length - len(tokenizer(rest)["input_ids"])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= room:
            return text
        return str(tokenizer.decode(ids[: max(room - 1, 0)])).rstrip()

    return fit


def lm_context(
    ctx: PassContext, examples: Examples, end: str = "", fit: Fit | None = None
) -> PassContext:
    """`ctx` whose training texts are `examples`: the raw texts, or prompted and answered
    (see `prompted`)."""
    if examples == "text":
        return ctx
    prompt, words = ctx.data.notes.get("prompt"), ctx.data.notes.get("label_words")
    if not isinstance(prompt, str) or not isinstance(words, list):
        raise UserError(
            "examples: prompted needs labelled data (rotten-tomatoes, or a file with a label "
            "column); these texts have no labels: use examples: text"
        )
    data = dataclasses.replace(ctx.data, train=prompted(ctx.data.train, prompt, words, end, fit))
    return dataclasses.replace(ctx, data=data)


def text_batches(tokenizer: Any, ctx: PassContext, count: int, size: int = 8) -> list[Any]:
    """`count` batches of training texts (input_ids, attention_mask), e.g. for importance."""
    import numpy as np

    from compress.data.batches import bucketed_batches

    encoded = ctx.task.encode(tokenizer, ctx.data.train.inputs, ctx.max_length)
    order = bucketed_batches(ctx.task.lengths(encoded), size, np.random.default_rng(ctx.seed))
    return [ctx.task.collate(tokenizer, encoded, idx) for idx in order[:count]]


def perplexity_validator(tokenizer: Any, ctx: PassContext) -> Validator:
    """Validation perplexity (of the raw validation texts) after each epoch; lower is better."""
    from compress.llm.runtime import TorchLM
    from compress.llm.scores import perplexity

    texts = ctx.data.validation.texts[:VALIDATION_TEXTS]

    def validate(model: Any) -> tuple[float, dict[str, float]]:
        value = perplexity(TorchLM(model), tokenizer, texts, ctx.max_length)["perplexity"]
        return -value, {"val_perplexity": value}

    return validate


def train_lm(
    model: Any,
    tokenizer: Any,
    cfg: TrainConfig,
    ctx: PassContext,
    loss_fn: LossFn,
    desc: str,
    examples: Examples,
    min_steps: int = 0,
) -> dict[str, Any]:
    """Train a causal LM on the recipe's texts (see `train`), validated by perplexity."""
    validate = perplexity_validator(tokenizer, ctx)
    end = end_of_text(tokenizer, getattr(model, "config", None))
    taught = lm_context(ctx, examples, end, text_fitter(tokenizer, ctx.max_length))
    return train(model, tokenizer, cfg, taught, loss_fn, desc, min_steps, validate)
