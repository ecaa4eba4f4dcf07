"""Where each transformer encoder keeps its layers, attention heads, FFN and embeddings.

One table row per Hugging Face `model_type`, so the passes that cut models
(`prune`, `distill` by layers, `prune_vocab`) reach every supported family
(text encoders, and ViT among image classifiers) the same way instead of
branching on class names. Paths are attribute paths from
the base model (`model.base_model`) or from one transformer block.

`prunes_heads` says whether transformers can rebuild the family with fewer
heads (`prune_heads`, recorded in `config.pruned_heads`). DeBERTa-v2 cannot:
its attention output layer is built `hidden_size` wide whatever the heads, so a
model with fewer heads would not reload; its FFN neurons and layers prune.

This module imports nothing heavy: the recipe validator reads it before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compress.errors import UserError


@dataclass(frozen=True)
class EncoderAdapter:
    """How to reach the parts of one encoder family."""

    family: str
    layers: str  # base model -> the ModuleList of transformer blocks
    query: str  # block -> the query / key / value projections
    key: str
    value: str
    attention_out: str  # block -> the attention output projection (input: heads x head size)
    ffn_in: str  # block -> first FFN linear (rows: neurons)
    ffn_out: str  # block -> second FFN linear (columns: neurons)
    ffn_key: str = "intermediate_size"  # the config key of the FFN width
    prunes_heads: bool = True


def _bert_like(family: str, attention: str = "attention.self") -> EncoderAdapter:
    """BERT's layout; `attention` is the block's self-attention (ViT: attention.attention)."""
    return EncoderAdapter(
        family,
        layers="encoder.layer",
        query=f"{attention}.query",
        key=f"{attention}.key",
        value=f"{attention}.value",
        attention_out="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
    )


ADAPTERS: dict[str, EncoderAdapter] = {
    "bert": _bert_like("BERT"),
    "electra": _bert_like("ELECTRA"),
    "roberta": _bert_like("RoBERTa"),
    "xlm-roberta": _bert_like("XLM-RoBERTa"),
    "vit": _bert_like("ViT", attention="attention.attention"),
    "distilbert": EncoderAdapter(
        "DistilBERT",
        layers="transformer.layer",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        attention_out="attention.out_lin",
        ffn_in="ffn.lin1",
        ffn_out="ffn.lin2",
        ffn_key="hidden_dim",
    ),
    "deberta-v2": EncoderAdapter(
        "DeBERTa-v2/v3",
        layers="encoder.layer",
        query="attention.self.query_proj",
        key="attention.self.key_proj",
        value="attention.self.value_proj",
        attention_out="attention.output.dense",
        ffn_in="intermediate.dense",
        ffn_out="output.dense",
        prunes_heads=False,
    ),
}

HEADS_UNSUPPORTED = (
    "attention heads cannot be pruned (transformers rebuilds its attention output "
    "hidden_size wide); prune ffn and layers instead"
)
TOKENIZER_KINDS = {"WordPiece": "WordPiece", "BPE": "byte-level BPE", "Unigram": "Unigram"}


def supported() -> str:
    """The supported model types, for messages."""
    return ", ".join(ADAPTERS)


def unsupported(model_type: str, what: str) -> str | None:
    """Why `what` cannot handle `model_type` (None: it can)."""
    if model_type in ADAPTERS:
        return None
    return f"{what} does not support model type '{model_type}' (supported: {supported()})"


def adapter_for(model_type: str, what: str) -> EncoderAdapter:
    """The adapter of `model_type`, or a UserError saying `what` needs one and which exist."""
    problem = unsupported(model_type, what)
    if problem is not None:
        raise UserError(problem)
    return ADAPTERS[model_type]


def lora_targets(model_type: str) -> list[str] | None:
    """LoRA's default modules: the query and value projections (None: let peft choose)."""
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        return None
    return [adapter.query.rsplit(".", 1)[-1], adapter.value.rsplit(".", 1)[-1]]


def tokenizer_unsupported(kind: str | None) -> str | None:
    """Why vocabulary pruning cannot handle a tokenizer of `kind` (None: it can)."""
    if kind in TOKENIZER_KINDS:
        return None
    if kind is None:
        return "prune_vocab needs a fast tokenizer (tokenizer.json) in the model folder"
    kinds = ", ".join(TOKENIZER_KINDS.values())
    return f"prune_vocab does not support {kind} tokenizers (supported: {kinds})"


def adapter_of(model: Any, what: str) -> EncoderAdapter:
    """The adapter of a loaded model (by `config.model_type`)."""
    config = getattr(model, "config", None)
    return adapter_for(str(getattr(config, "model_type", type(model).__name__)), what)


def get(module: Any, path: str) -> Any:
    """`module.a.b.c` for path "a.b.c" (None where a part is missing)."""
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def put(module: Any, path: str, value: Any) -> None:
    """Set `module.a.b.c = value` for path "a.b.c"."""
    *parents, last = path.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)
