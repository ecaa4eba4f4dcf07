"""The decoder families compress supports, and how each one lays out its layers.

Every supported family keeps its decoder in `model.model.layers[i]`, each with a
`self_attn` (ending in `o_proj`) and an `mlp` (ending in `down_proj`); they differ
in whether Q/K/V and gate/up are separate projections or one fused matrix
(Phi-3's `qkv_proj`, `gate_up_proj`), in the per-layer lists their config carries
(`layer_types`, SmolLM3's `no_rope_layers`), and in what ONNX Runtime's
GroupQueryAttention kernel can express of their attention (`gqa_blockers`,
`gqa_settings`: sliding windows, softcapping and Gemma's query scale it can).

A recipe whose model is of another family is refused at validation, before any
weights load (`check_family`).

Example:
    >>> family_of("qwen2").fused_qkv
    False
    >>> family_of("phi3").fused_qkv
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compress.errors import ModelLoadError


@dataclass(frozen=True)
class Family:
    """One model_type: its name in messages and what differs from Llama."""

    model_type: str
    name: str
    fused_qkv: bool = False  # self_attn.qkv_proj: [Q heads | K heads | V heads] rows
    fused_gate_up: bool = False  # mlp.gate_up_proj: [gate | up] rows
    per_layer: tuple[str, ...] = ("layer_types",)  # config lists with one entry per layer
    eager_attention: bool = False  # SDPA would drop part of the attention (softcapping)
    qk_norm: bool = False  # per-head RMSNorm of Q and K before the rotary embedding


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("llama", "Llama (also SmolLM, SmolLM2)"),
        Family("mistral", "Mistral"),
        Family("qwen2", "Qwen2 / Qwen2.5"),
        Family("qwen3", "Qwen3", qk_norm=True),
        Family("phi3", "Phi-3", fused_qkv=True, fused_gate_up=True),
        Family("gemma2", "Gemma 2", eager_attention=True),
        Family("gemma3_text", "Gemma 3 (text)", qk_norm=True),
        Family("smollm3", "SmolLM3", per_layer=("layer_types", "no_rope_layers")),
    )
}
SUPPORTED = tuple(FAMILIES)
HINTS = {
    "gemma3": "load its text decoder (model_type gemma3_text, Gemma3ForCausalLM) instead",
}


def family_of(model_type: str | None) -> Family:
    """The family of `model_type`; an unknown one is treated as Llama-shaped."""
    return FAMILIES.get(model_type or "", Family(model_type or "unknown", model_type or "?"))


def unsupported_family(model_type: str | None) -> str | None:
    """Why text-generation cannot take `model_type` (None: it can, or the type is unknown)."""
    if not model_type or model_type in FAMILIES:
        return None
    hint = HINTS.get(model_type)
    return (
        f"model family '{model_type}' is not supported by text-generation "
        f"(supported: {', '.join(SUPPORTED)})" + (f"; {hint}" if hint else "")
    )


def check_family(model_type: str | None, where: str) -> None:
    """Refuse a decoder of a family compress does not support, in one line."""
    problem = unsupported_family(model_type)
    if problem is not None:
        raise ModelLoadError(f"{where}: {problem}")


def gqa_blockers(config: Any, head_dim: int) -> list[str]:
    """What in this model's attention ONNX Runtime's GroupQueryAttention rewrite cannot
    express (empty: the rewrite may be tried). Sliding windows, softcapping and Gemma's
    `query_pre_attn_scalar` it can (`gqa_settings`)."""
    family = family_of(getattr(config, "model_type", None))
    reasons = []
    if head_dim % 16:
        reasons.append(f"head size {head_dim} (GroupQueryAttention needs a multiple of 16)")
    if getattr(config, "attention_multiplier", None) is not None:
        reasons.append("attention scaled by attention_multiplier")
    if family.qk_norm:
        reasons.append(f"{family.name} normalises Q and K per head before the rotary embedding")
    if family.fused_qkv:
        reasons.append(f"{family.name} projects Q, K and V with one fused qkv_proj")
    return reasons


def gqa_settings(config: Any, head_dim: int) -> dict[str, Any]:
    """GroupQueryAttention's `scale`, per-layer `windows` (how many keys a query sees, the
    query's own included; -1: all) and `softcap` (0: none) for this model's attention."""
    layers = int(config.num_hidden_layers)
    context = int(getattr(config, "max_position_embeddings", 2048))
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or ["sliding_attention"] * layers
    windows = None
    if window and window < context:
        windows = [int(window) if t == "sliding_attention" else -1 for t in layer_types]
    scalar = getattr(config, "query_pre_attn_scalar", None)
    return {
        "scale": float(scalar if scalar is not None else head_dim) ** -0.5,
        "windows": windows,
        "softcap": float(getattr(config, "attn_logit_softcapping", None) or 0.0),
    }
