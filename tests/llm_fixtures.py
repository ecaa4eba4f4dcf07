"""A tiny Llama built from a config, with a word-level tokenizer, for text-generation tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FILLER, NEGATIVE, POSITIVE

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]
WORDS = [*SPECIAL, *POSITIVE, *NEGATIVE, *FILLER, "neg", "pos", "Review:", "Sentiment:"]


def build_tiny_llama(
    folder: Path, layers: int = 4, tie: bool = True, hidden: int = 64, family: str = "llama"
) -> Path:
    """Save a random 4-layer Llama (hidden 64, 4 heads of 16 in 2 KV groups) and its
    tokenizer; a head size of 16 is the smallest ONNX Runtime's GroupQueryAttention takes.
    `family="qwen2"`: the same shape as Qwen2, whose Q/K/V projections have (random) biases."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

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
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[family]
    config = config_class(
        vocab_size=len(WORDS),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = model_class(config)
    if family == "qwen2":
        with torch.no_grad():  # random biases, not the zeros a fresh model starts with
            for layer in model.model.layers:
                attention = layer.self_attn
                for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
                    proj.bias.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder
