"""Structured pruning of decoder LMs (q/k/v/o and gate/up/down projections, or Phi-3's
fused qkv_proj and gate_up_proj, sliced alike; see `compress.llm.families`).

Depth: the layers whose output differs least from their input on calibration
text (1 - cosine similarity, "block influence") are removed. Width: FFN
neurons by their mean |activation| (the down projection's input), and
attention heads in whole key/value groups (a KV head with the query heads that
share it) by the norm of their output, so the model stays valid grouped-query
attention. Each layer keeps the same sizes, so the config's
`intermediate_size`, `num_attention_heads`, `num_key_value_heads` and
`head_dim` describe it and `from_pretrained` reloads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from compress.errors import UserError
from compress.llm.families import family_of

if TYPE_CHECKING:
    import torch

Batch = dict[str, "torch.Tensor"]


def decoder_layers(model: Any) -> Any:
    """The decoder's list of layers (`model.model.layers` in Llama, Qwen2, Mistral, ...)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    needed = ("self_attn", "mlp")
    if layers is None or not all(hasattr(layers[0], n) for n in needed):
        raise UserError(
            f"pruning {type(model).__name__}: compress prunes Llama-style decoders "
            "(model.layers[i].self_attn / .mlp); this architecture is not one"
        )
    return layers


def _run(model: Any, batches: Iterable[Batch]) -> None:
    import torch

    with torch.inference_mode():
        for batch in batches:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def layer_influence(model: Any, batches: list[Batch]) -> list[float]:
    """Per layer: mean over real tokens of 1 - cos(layer input, layer output)."""
    import torch

    layers = decoder_layers(model)
    sums = [0.0] * len(layers)
    mask: list[torch.Tensor] = []

    def hook(index: int) -> Any:
        def fn(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            hidden_in = args[0] if args else kwargs["hidden_states"]
            hidden_out = out[0] if isinstance(out, tuple) else out
            cos = torch.nn.functional.cosine_similarity(hidden_in, hidden_out, dim=-1)
            sums[index] += float(((1 - cos) * mask[0]).sum())

        return fn

    handles = [
        layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)
    ]
    tokens = 0.0
    try:
        for batch in batches:
            mask[:] = [batch["attention_mask"].float()]
            tokens += float(mask[0].sum())
            _run(model, [batch])
    finally:
        for handle in handles:
            handle.remove()
    return [s / max(tokens, 1.0) for s in sums]


def drop_layers(model: Any, keep: list[int]) -> None:
    """Keep only the decoder layers `keep` (in order), renumbering their cache slots."""
    import torch

    layers = decoder_layers(model)
    kept = [layers[i] for i in keep]
    for index, layer in enumerate(kept):
        layer.self_attn.layer_idx = index
    model.model.layers = torch.nn.ModuleList(kept)
    config = model.config
    config.num_hidden_layers = len(kept)
    for name in family_of(getattr(config, "model_type", None)).per_layer:
        if isinstance(getattr(config, name, None), list):  # layer_types, no_rope_layers
            setattr(config, name, [getattr(config, name)[i] for i in keep])


def width_scores(model: Any, batches: list[Batch]) -> tuple[list[Any], list[Any]]:
    """Per layer: |activation| of each FFN neuron, and the output norm of each KV group."""
    import torch

    layers = decoder_layers(model)
    config = model.config
    heads = config.num_attention_heads
    groups = getattr(config, "num_key_value_heads", heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    ffn = [torch.zeros(layer.mlp.down_proj.in_features) for layer in layers]
    attn = [torch.zeros(groups) for _ in layers]
    mask: list[torch.Tensor] = []

    def ffn_hook(index: int) -> Any:
        def fn(_module: Any, args: tuple[Any, ...]) -> None:
            ffn[index] += (args[0].abs() * mask[0][..., None]).sum((0, 1))

        return fn

    def attn_hook(index: int) -> Any:
        def fn(_module: Any, args: tuple[Any, ...]) -> None:
            x = args[0] * mask[0][..., None]
            per_head = x.reshape(*x.shape[:2], heads, head_dim).norm(dim=-1).sum((0, 1))
            attn[index] += per_head.reshape(groups, heads // groups).sum(-1)

        return fn

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(ffn_hook(i)))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(attn_hook(i)))
    try:
        for batch in batches:
            mask[:] = [batch["attention_mask"].float()]
            _run(model, [batch])
    finally:
        for handle in handles:
            handle.remove()
    return ffn, attn


def _rows(linear: Any, index: Any) -> None:
    linear.weight.data = linear.weight.data[index].clone()
    if linear.bias is not None:
        linear.bias.data = linear.bias.data[index].clone()
    linear.out_features = len(index)


def _columns(linear: Any, index: Any) -> None:
    linear.weight.data = linear.weight.data[:, index].clone()
    linear.in_features = len(index)


def prune_ffn(model: Any, scores: list[Any], width: int) -> None:
    """Keep the `width` highest-scoring FFN neurons of every layer."""
    import torch

    total = model.config.intermediate_size
    for layer, score in zip(decoder_layers(model), scores, strict=True):
        keep = score.argsort(descending=True)[:width].sort().values
        if hasattr(layer.mlp, "gate_up_proj"):  # Phi-3: [gate | up] rows of one matrix
            _rows(layer.mlp.gate_up_proj, torch.cat([keep, keep + total]))
        else:
            _rows(layer.mlp.gate_proj, keep)
            _rows(layer.mlp.up_proj, keep)
        _columns(layer.mlp.down_proj, keep)
    model.config.intermediate_size = width


def prune_kv_groups(model: Any, scores: list[Any], groups: int) -> None:
    """Keep the `groups` highest-scoring KV groups (a KV head and its query heads) per layer."""
    import torch

    config = model.config
    heads = config.num_attention_heads
    total = getattr(config, "num_key_value_heads", heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_group = heads // total
    for layer, score in zip(decoder_layers(model), scores, strict=True):
        kept = score.argsort(descending=True)[:groups].sort().values.tolist()
        kv = torch.tensor([g * head_dim + d for g in kept for d in range(head_dim)])
        q_heads = [g * per_group + h for g in kept for h in range(per_group)]
        q = torch.tensor([h * head_dim + d for h in q_heads for d in range(head_dim)])
        attn = layer.self_attn
        if hasattr(attn, "qkv_proj"):  # Phi-3: [Q heads | K heads | V heads] rows
            q_size, kv_size = heads * head_dim, total * head_dim
            _rows(attn.qkv_proj, torch.cat([q, kv + q_size, kv + q_size + kv_size]))
        else:
            _rows(attn.q_proj, q)
            _rows(attn.k_proj, kv)
            _rows(attn.v_proj, kv)
        _columns(attn.o_proj, q)
        for name in ("num_heads", "num_key_value_heads"):
            if hasattr(attn, name):
                setattr(attn, name, len(q_heads) if name == "num_heads" else groups)
    config.head_dim = head_dim  # no longer hidden_size // heads
    config.num_attention_heads = groups * per_group
    config.num_key_value_heads = groups
