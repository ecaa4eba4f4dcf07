"""Tiny decoder LMs built from configs, with a word-level tokenizer, for text-generation tests.

`build_tiny_llama(folder, family=...)` saves one of the families compress supports, each
with the traits that make it differ from Llama: Qwen2's Q/K/V biases, Qwen3's and Gemma 3's
per-head Q/K norms, Phi-3's fused `qkv_proj` and `gate_up_proj`, Mistral's (and Qwen's)
sliding window, Gemma 2's attention and logit softcapping, Gemma's scaled embeddings and
`query_pre_attn_scalar`, Gemma 3's local rotary base, SmolLM3's layers without rotary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import FILLER, NEGATIVE, POSITIVE

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
WORDS = [*SPECIAL, *POSITIVE, *NEGATIVE, *FILLER, "neg", "pos", "Review:", "Sentiment:"]
FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma3_text", "smollm3")
WINDOW = 8  # shorter than the tests' texts, so the window changes what the model computes


def _classes(family: str) -> tuple[Any, Any]:
    import transformers as t

    return {
        "llama": (t.LlamaConfig, t.LlamaForCausalLM),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM),
        "qwen3": (t.Qwen3Config, t.Qwen3ForCausalLM),
        "mistral": (t.MistralConfig, t.MistralForCausalLM),
        "phi3": (t.Phi3Config, t.Phi3ForCausalLM),
        "gemma2": (t.Gemma2Config, t.Gemma2ForCausalLM),
        "gemma3_text": (t.Gemma3TextConfig, t.Gemma3ForCausalLM),
        "smollm3": (t.SmolLM3Config, t.SmolLM3ForCausalLM),
    }[family]


def _family_options(family: str, layers: int, sliding_window: int | None) -> dict[str, Any]:
    """What each family sets beyond the shared shape."""
    sliding = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    if family == "qwen3":  # its config's default head_dim is 128, not hidden // heads
        return {"head_dim": 16, **_family_options("qwen2", layers, sliding_window)}
    if family == "qwen2":
        window = {
            "use_sliding_window": True,
            "sliding_window": sliding_window,
            "max_window_layers": 0,
        }
        return window if sliding_window else {}
    if family == "mistral":
        return {"sliding_window": sliding_window}  # None: full attention everywhere
    if family == "phi3":
        return {"sliding_window": sliding_window, "pad_token_id": 0}
    if family == "gemma2":
        return {
            "head_dim": 16,
            "query_pre_attn_scalar": 24,  # not head_dim: the scale must come from the config
            "sliding_window": sliding_window or WINDOW,
            # caps that bite in a tiny random model (attention logits ~0.07, logits ~0.5)
            "attn_logit_softcapping": 0.05,
            "final_logit_softcapping": 0.3,
            "hidden_activation": "gelu_pytorch_tanh",
        }
    if family == "gemma3_text":
        return {
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "sliding_window": sliding_window or WINDOW,
            "layer_types": sliding,
            "rope_local_base_freq": 1000.0,
            "final_logit_softcapping": 0.3,
            "hidden_activation": "gelu_pytorch_tanh",
        }
    if family == "smollm3":
        return {"no_rope_layers": [int((i + 1) % 4 != 0) for i in range(layers)]}
    return {}


def build_tiny_llama(
    folder: Path,
    layers: int = 4,
    tie: bool = True,
    hidden: int = 64,
    family: str = "llama",
    sliding_window: int | None = None,
) -> Path:
    """Save a random 4-layer decoder (hidden 64, 4 heads of 16 in 2 KV groups) and its
    tokenizer; a head size of 16 is the smallest ONNX Runtime's GroupQueryAttention takes.
    `family` is a model_type of `FAMILIES`: "qwen2" has (random) Q/K/V biases; "gemma2" and
    "gemma3_text" alternate sliding-window and full layers; `sliding_window` gives Mistral,
    Qwen2/3 and Phi-3 a window (by default they attend to the whole context)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(WORDS)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=128,
    )
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config_class, model_class = _classes(family)
    shape: dict[str, Any] = {
        "vocab_size": len(WORDS),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": tie,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }
    config = config_class(**{**shape, **_family_options(family, layers, sliding_window)})
    model = model_class(config)
    with torch.no_grad():
        if family == "qwen2":  # random biases, not the zeros a fresh model starts with
            for layer in model.model.layers:
                attention = layer.self_attn
                for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
                    proj.bias.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder
