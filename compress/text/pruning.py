"""Structured pruning of transformer encoders: importance scores, the surgery, and their cost.

Every architecture in `compress.text.adapters` is reached through its table
row. Heads are removed with transformers' own `prune_heads` (recorded in
`config.pruned_heads`, so `from_pretrained` rebuilds the same shapes); FFN
neurons with `prune_linear_layer`, keeping one width for every layer so that
the config's FFN width describes the model. Importance is weight
magnitude, or a first-order Taylor score |w * dL/dw| for neurons and the
mask-gradient score of Michel et al. (2019) for heads, accumulated over a few
batches of real training data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.errors import PassFailed, UserError
from compress.text.adapters import HEADS_UNSUPPORTED, adapter_of, get, put

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def encoder_layers(model: PreTrainedModel) -> list[Any]:
    """The transformer blocks of a supported encoder (see `compress.text.adapters`)."""
    adapter = adapter_of(model, "structured pruning")
    layers = get(model.base_model, adapter.layers)
    if layers is None:
        raise PassFailed(f"{type(model).__name__} has no {adapter.layers} to prune")
    return list(layers)


def layer_names(model: PreTrainedModel) -> list[str]:
    path = adapter_of(model, "structured pruning").layers
    count = len(encoder_layers(model))
    return [f"{model.base_model_prefix}.{path}.{i}" for i in range(count)]


def head_size(model: PreTrainedModel) -> int:
    """Width of one attention head (unchanged by pruning)."""
    config = model.config
    size = getattr(config, "attention_head_size", None)
    return int(size) if size else int(config.hidden_size // config.num_attention_heads)


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


def _heads(model: PreTrainedModel) -> list[int]:
    """Heads in each layer, read from the attention output projection's input width."""
    adapter, size = adapter_of(model, "structured pruning"), head_size(model)
    return [get(b, adapter.attention_out).in_features // size for b in encoder_layers(model)]


def magnitude_scores(model: PreTrainedModel) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: head scores and FFN neuron scores from weight L2 norms."""
    import torch

    adapter, size = adapter_of(model, "structured pruning"), head_size(model)
    heads, neurons = [], []
    with torch.no_grad():
        for layer, n in zip(encoder_layers(model), _heads(model), strict=True):
            weights = [get(layer, p).weight for p in (adapter.query, adapter.key, adapter.value)]
            rows = torch.cat(weights, 1)
            out = get(layer, adapter.attention_out).weight.t()
            per_head = (rows.pow(2).sum(1) + out.pow(2).sum(1)).view(n, size).sum(1).sqrt()
            heads.append(per_head.cpu().numpy())
            w_in = get(layer, adapter.ffn_in).weight.pow(2).sum(1)
            w_out = get(layer, adapter.ffn_out).weight.pow(2).sum(0)
            neurons.append((w_in + w_out).sqrt().cpu().numpy())
    return heads, neurons


def taylor_scores(
    model: PreTrainedModel,
    batches: list[dict[str, Any]],
    forward: Any = None,
    loss_fn: Any = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per layer: head scores |dL/d mask| (Michel et al.) and neuron scores |w * dL/dw|.

    `batches` are model inputs with what `loss_fn(output, batch)` reads (default:
    cross-entropy on their `labels`); `forward` is what runs them (default:
    `model`; the wrapper around the transformer of a ViT or a sentence embedder). The head mask
    multiplies each head's slice of the attention output projection's input (a
    forward pre-hook), which works the same for every architecture in the
    adapter table.
    """
    import torch

    adapter, size = adapter_of(model, "structured pruning"), head_size(model)
    layers, counts = encoder_layers(model), _heads(model)
    device = next(model.parameters()).device
    masks = [torch.ones(n, device=device, requires_grad=True) for n in counts]

    def masking(mask: torch.Tensor) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (args[0] * mask.repeat_interleave(size), *args[1:])

        return hook

    hooks = [
        get(layer, adapter.attention_out).register_forward_pre_hook(masking(mask))
        for layer, mask in zip(layers, masks, strict=True)
    ]
    run = forward if forward is not None else model
    head_acc = [torch.zeros(n, device=device) for n in counts]
    neuron_acc = [torch.zeros(get(b, adapter.ffn_in).out_features, device=device) for b in layers]
    run.eval()  # no dropout: scores of the deterministic model
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "targets")}
            out = run(**inputs)
            if loss_fn is not None:
                loss = loss_fn(out, batch)
            else:
                logits = getattr(out, "logits", out)  # a transformers output, or a tensor
                loss = torch.nn.functional.cross_entropy(logits, batch["labels"].to(device))
            model.zero_grad()
            for mask in masks:
                mask.grad = None
            loss.backward()
            for i, layer in enumerate(layers):
                grad = masks[i].grad
                assert grad is not None
                head_acc[i] += grad.abs()
                w_in = get(layer, adapter.ffn_in).weight
                w_out = get(layer, adapter.ffn_out).weight
                score = (w_in * w_in.grad).abs().sum(1) + (w_out * w_out.grad).abs().sum(0)
                neuron_acc[i] += score.detach()
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad()
    heads = [h.detach().cpu().numpy() for h in head_acc]
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


def remove_heads(model: PreTrainedModel, plan: dict[int, list[int]]) -> None:
    """Remove the heads in `plan` (layer -> head indices), recorded in `config.pruned_heads`."""
    adapter = adapter_of(model, "structured pruning")
    if not adapter.prunes_heads:
        raise UserError(f"{adapter.family}: {HEADS_UNSUPPORTED}")
    model.prune_heads(plan)


def prune_ffn(model: PreTrainedModel, scores: list[np.ndarray], width: int) -> None:
    """Keep the `width` most important FFN neurons in every layer."""
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    adapter = adapter_of(model, "structured pruning")
    for layer, score in zip(encoder_layers(model), scores, strict=True):
        keep: Any = torch.as_tensor(np.sort(np.argsort(-score, kind="stable")[:width]))
        put(layer, adapter.ffn_in, prune_linear_layer(get(layer, adapter.ffn_in), keep, dim=0))
        put(layer, adapter.ffn_out, prune_linear_layer(get(layer, adapter.ffn_out), keep, dim=1))
    setattr(model.config, adapter.ffn_key, width)


def ffn_width(model: PreTrainedModel) -> int:
    """The FFN width the config records."""
    return int(getattr(model.config, adapter_of(model, "structured pruning").ffn_key))


def linear_flops_per_token(model: PreTrainedModel, seq_len: int) -> int:
    """Multiply-accumulates per token of the encoder's matrix products (attention included)."""
    adapter = adapter_of(model, "structured pruning")
    total = 0
    for layer in encoder_layers(model):
        query, out = get(layer, adapter.query), get(layer, adapter.attention_out)
        ffn_in = get(layer, adapter.ffn_in)
        inner = query.out_features
        total += 3 * query.in_features * inner + inner * out.out_features
        total += 2 * seq_len * inner  # QK^T and attention x V
        total += 2 * ffn_in.in_features * ffn_in.out_features
    return total


def model_meta(model: PreTrainedModel, seq_len: int) -> dict[str, Any]:
    """Parameters and, for BERT-like encoders, matmul MACs per token at `seq_len`."""
    import contextlib

    meta: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    with contextlib.suppress(PassFailed, UserError):  # no adapter: no FLOPs figure
        meta["macs_per_token"] = linear_flops_per_token(model, seq_len)
    return meta
