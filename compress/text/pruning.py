"""Structured pruning of BERT-like encoders: importance scores, the surgery, and their cost.

Heads are removed with transformers' own `prune_heads` (recorded in
`config.pruned_heads`, so `from_pretrained` rebuilds the same shapes); FFN
neurons with `prune_linear_layer`, keeping one width for every layer so that
`config.intermediate_size` describes the model. Importance is weight
magnitude, or a first-order Taylor score |w * dL/dw| for neurons and the
mask-gradient score of Michel et al. (2019) for heads, accumulated over a few
batches of real training data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.data import Split
from compress.data.batches import bucketed_batches
from compress.errors import PassFailed
from compress.text.tokens import collate, encode

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def encoder_layers(model: PreTrainedModel) -> list[Any]:
    """The transformer blocks of a BERT-like model (`<base>.encoder.layer`)."""
    base = getattr(model, model.base_model_prefix, None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(b, "intermediate") for b in layers):
        raise PassFailed(
            f"structured pruning supports BERT-like encoders, not {type(model).__name__}"
        )
    return list(layers)


def layer_names(model: PreTrainedModel) -> list[str]:
    return [
        f"{model.base_model_prefix}.encoder.layer.{i}" for i in range(len(encoder_layers(model)))
    ]


def select_layers(names: list[str], targets: list[str], ignore: list[str]) -> list[int]:
    """Indices of layers whose name matches a `targets` regex and no `ignore` regex."""
    keep = []
    for i, name in enumerate(names):
        if any(re.fullmatch(t, name) for t in targets) and not any(
            re.fullmatch(p, name) for p in ignore
        ):
            keep.append(i)
    return keep


def round_width(width: float, multiple: int, total: int) -> int:
    """`width` rounded to a multiple of `multiple` (at least one multiple, at most `total`).

    >>> round_width(770.4, 8, 1536)
    768
    """
    rounded = round(width / multiple) * multiple
    return max(min(multiple, total), min(total, rounded))


def _heads(layer: Any) -> int:
    return int(layer.attention.self.num_attention_heads)


def magnitude_scores(model: PreTrainedModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: head scores and FFN neuron scores from weight L2 norms."""
    import torch

    heads, neurons = [], []
    with torch.no_grad():
        for layer in encoder_layers(model):
            att = layer.attention
            n, size = _heads(layer), att.self.attention_head_size
            rows = torch.cat([att.self.query.weight, att.self.key.weight, att.self.value.weight], 1)
            out = att.output.dense.weight.t()
            per_head = (rows.pow(2).sum(1) + out.pow(2).sum(1)).view(n, size).sum(1).sqrt()
            heads.append(per_head.cpu().numpy())
            w_in = layer.intermediate.dense.weight.pow(2).sum(1)
            w_out = layer.output.dense.weight.pow(2).sum(0)
            neurons.append((w_in + w_out).sqrt().cpu().numpy())
    return heads, neurons


def taylor_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    split: Split,
    max_length: int,
    batches: int,
    batch_size: int,
    seed: int,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: head scores |dL/d mask| (Michel et al.) and neuron scores |w * dL/dw|."""
    import torch

    layers = encoder_layers(model)
    device = next(model.parameters()).device
    head_mask = torch.ones(
        len(layers), max(_heads(b) for b in layers), device=device, requires_grad=True
    )
    for i, layer in enumerate(layers):
        head_mask.data[i, _heads(layer) :] = 0
    encoded = encode(tokenizer, split.texts, max_length)
    order = bucketed_batches(
        [len(e["input_ids"]) for e in encoded], batch_size, np.random.default_rng(seed)
    )
    labels = torch.as_tensor(split.labels).to(device)
    head_acc = torch.zeros_like(head_mask)
    neuron_acc = [torch.zeros(b.intermediate.dense.out_features, device=device) for b in layers]
    model.eval()  # no dropout: scores of the deterministic model
    for idx in order[:batches]:
        batch = {k: v.to(device) for k, v in collate(tokenizer, encoded, idx).items()}
        loss = model(**batch, labels=labels[idx], head_mask=head_mask).loss
        model.zero_grad()
        if head_mask.grad is not None:
            head_mask.grad.zero_()
        loss.backward()
        assert head_mask.grad is not None
        head_acc += head_mask.grad.abs()
        for i, layer in enumerate(layers):
            w_in, w_out = layer.intermediate.dense.weight, layer.output.dense.weight
            score = (w_in * w_in.grad).abs().sum(1) + (w_out * w_out.grad).abs().sum(0)
            neuron_acc[i] += score.detach()
    model.zero_grad()
    heads = [head_acc[i, : _heads(b)].detach().cpu().numpy() for i, b in enumerate(layers)]
    return heads, [n.cpu().numpy() for n in neuron_acc]


def heads_to_prune(
    scores: list[np.ndarray], ratio: float, layers: list[int], min_heads: int
) -> dict[int, list[int]]:
    """The globally least important `ratio` of heads in `layers`, keeping `min_heads` per layer."""
    candidates = sorted((float(scores[i][h]), i, h) for i in layers for h in range(len(scores[i])))
    budget = round(ratio * len(candidates))
    left = {i: len(scores[i]) for i in layers}
    chosen: dict[int, list[int]] = {}
    for _, i, h in candidates:
        if budget == 0:
            break
        if left[i] > min_heads:
            chosen.setdefault(i, []).append(h)
            left[i] -= 1
            budget -= 1
    return {i: sorted(h) for i, h in chosen.items()}


def prune_ffn(model: PreTrainedModel, scores: list[np.ndarray], width: int) -> None:
    """Keep the `width` most important FFN neurons in every layer."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    for layer, score in zip(encoder_layers(model), scores, strict=True):
        keep: Any = torch.as_tensor(np.sort(np.argsort(-score, kind="stable")[:width]))
        layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, keep, dim=0)
        layer.output.dense = prune_linear_layer(layer.output.dense, keep, dim=1)
    model.config.intermediate_size = width


def linear_flops_per_token(model: PreTrainedModel, seq_len: int) -> int:
    """Multiply-accumulates per token of the encoder's matrix products (attention included)."""
    total = 0
    for layer in encoder_layers(model):
        att = layer.attention
        inner = att.self.query.out_features
        total += 3 * att.self.query.in_features * inner + inner * att.output.dense.out_features
        total += 2 * seq_len * inner  # QK^T and attention x V
        total += 2 * layer.intermediate.dense.in_features * layer.intermediate.dense.out_features
    return total


def model_meta(model: PreTrainedModel, seq_len: int) -> dict[str, Any]:
    """Parameters and, for BERT-like encoders, matmul MACs per token at `seq_len`."""
    import contextlib

    meta: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    with contextlib.suppress(PassFailed):  # not a BERT-like encoder: no FLOPs figure
        meta["macs_per_token"] = linear_flops_per_token(model, seq_len)
    return meta
