"""Helpers the model-producing passes share."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from compress.artifacts import Artifact, Variant

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from compress.passes.base import PassContext


def load_hf_input(
    artifact: Artifact, ctx: PassContext
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an HF artifact as a classifier sized to the dataset's labels."""
    from compress.models import load_classifier

    return load_classifier(str(artifact.path), ctx.data.label_names)


def save_hf_output(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ctx: PassContext
) -> Artifact:
    """Save to the pass's folder and describe the result as an HF artifact."""
    from compress.models import save_hf

    save_hf(model, tokenizer, ctx.work_dir)
    variant = Variant("fp32", runtime="torch", precision="fp32", target="portable")
    return Artifact("hf", ctx.work_dir, ctx.key, [variant], model_meta(model, ctx.max_length))


def model_meta(model: PreTrainedModel, seq_len: int) -> dict[str, Any]:
    """Parameters and, for BERT-like encoders, matmul MACs per token at `seq_len`."""
    from compress.errors import PassFailed
    from compress.pruning import linear_flops_per_token

    meta: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    with contextlib.suppress(PassFailed):  # not a BERT-like encoder: no FLOPs figure
        meta["macs_per_token"] = linear_flops_per_token(model, seq_len)
    return meta
