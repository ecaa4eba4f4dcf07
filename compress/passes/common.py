"""Helpers the model-producing passes share."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from compress.artifacts import Artifact, Variant

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from compress.passes.base import PassContext


def load_input(artifact: Artifact, ctx: PassContext) -> tuple[Any, Any]:
    """Load a model artifact (and its tokenizer or image preprocessor) for the dataset's labels."""
    return ctx.task.load(str(artifact.path), ctx.data.label_names)


def save_output(model: Any, processor: Any, ctx: PassContext) -> Artifact:
    """Save to the pass's folder and describe the result as a model artifact."""
    ctx.task.save(model, processor, ctx.work_dir)
    variant = Variant("fp32", runtime="torch", precision="fp32", target="portable")
    meta = ctx.task.model_meta(model, processor, ctx.max_length)
    return Artifact("hf", ctx.work_dir, ctx.key, [variant], meta)


def model_meta(model: PreTrainedModel, seq_len: int) -> dict[str, Any]:
    """Parameters and, for BERT-like encoders, matmul MACs per token at `seq_len`."""
    from compress.errors import PassFailed
    from compress.pruning import linear_flops_per_token

    meta: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    with contextlib.suppress(PassFailed):  # not a BERT-like encoder: no FLOPs figure
        meta["macs_per_token"] = linear_flops_per_token(model, seq_len)
    return meta
