"""What the passes that train causal LMs share: their data view and their validation."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from compress.data import Split
from compress.errors import UserError
from compress.passkit.context import PassContext
from compress.passkit.training import LossFn, TrainConfig, Validator, train

Examples = Literal["text", "prompted"]
VALIDATION_TEXTS = 200  # validation perplexity after each epoch reads this many texts


def prompted(split: Split, prompt: str, words: list[str]) -> Split:
    """Each text as the task asks it, answered: the prompt, then the label's word."""
    texts = [
        prompt.replace("{text}", text) + " " + words[int(label)]
        for text, label in zip(split.texts, split.labels, strict=True)
    ]
    return Split(texts, split.labels)


def lm_context(ctx: PassContext, examples: Examples) -> PassContext:
    """`ctx` whose training texts are `examples`: the raw texts, or prompted and answered."""
    if examples == "text":
        return ctx
    prompt, words = ctx.data.notes.get("prompt"), ctx.data.notes.get("label_words")
    if not isinstance(prompt, str) or not isinstance(words, list):
        raise UserError(
            "examples: prompted needs labelled data (rotten-tomatoes, or a file with a label "
            "column); these texts have no labels: use examples: text"
        )
    data = dataclasses.replace(ctx.data, train=prompted(ctx.data.train, prompt, words))
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
    return train(
        model, tokenizer, cfg, lm_context(ctx, examples), loss_fn, desc, min_steps, validate
    )
