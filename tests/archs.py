"""Tiny Hugging Face classifiers of each supported architecture, with the tokenizer kind it uses.

Every model is built from a config (random weights) and saved as a normal
folder: BERT, ELECTRA and DistilBERT with WordPiece, RoBERTa with byte-level
BPE, XLM-R and DeBERTa-v2 with a SentencePiece-style Unigram model, each
tokenizer trained on the tests' sentences plus words those never use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import FILLER, NEGATIVE, POSITIVE, SPECIAL, UNUSED, make_texts

ARCHITECTURES = ("bert", "electra", "distilbert", "roberta", "xlm-roberta", "deberta-v2")
EXTRA_WORDS = "zebra quantum harbor violin glacier tundra saxophone nebula".split()
ANGLE_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _corpus() -> list[str]:
    texts, _ = make_texts(200, 0)
    return texts + [" ".join(EXTRA_WORDS)] * 4 + [" ".join(POSITIVE + NEGATIVE + FILLER)]


def _wordpiece(folder: Path, cls: Any) -> Any:
    vocab = folder / "vocab.txt"
    words = SPECIAL + POSITIVE + NEGATIVE + FILLER + UNUSED + EXTRA_WORDS
    vocab.write_text("\n".join(dict.fromkeys(words)) + "\n")
    return cls(vocab_file=str(vocab), do_lower_case=True, model_max_length=64)


def _byte_bpe() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=ANGLE_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>"))
    )
    return RobertaTokenizerFast(tokenizer_object=tok, model_max_length=64)


def _unigram(special: list[str], cls: Any, cls_token: str, sep_token: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    unk = next(t for t in special if "unk" in t.lower())
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=special, unk_token=unk, show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    cls_id, sep_id = tok.token_to_id(cls_token), tok.token_to_id(sep_token)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls_token} $A {sep_token}",
        pair=f"{cls_token} $A {sep_token} $B {sep_token}",
        special_tokens=[(cls_token, cls_id), (sep_token, sep_id)],
    )
    return cls(tokenizer_object=tok, model_max_length=64)


def build(arch: str, folder: Path, layers: int = 4) -> Path:
    """Save a random `arch` classifier (hidden 32, 4 heads, FFN 64) and its tokenizer."""
    import torch
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {
        "hidden_size": 32,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 80,
        "num_labels": 2,
        "id2label": {0: "neg", 1: "pos"},
        "label2id": {"neg": 0, "pos": 1},
    }
    if arch in ("bert", "electra", "distilbert"):
        cls = {
            "bert": tf.BertTokenizerFast,
            "electra": tf.ElectraTokenizerFast,
            "distilbert": tf.DistilBertTokenizerFast,
        }[arch]
        tokenizer = _wordpiece(folder, cls)
    elif arch == "roberta":
        tokenizer = _byte_bpe()
    elif arch == "xlm-roberta":
        tokenizer = _unigram(ANGLE_SPECIAL, tf.XLMRobertaTokenizerFast, "<s>", "</s>")
    elif arch == "deberta-v2":
        special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        tokenizer = _unigram(special, tf.DebertaV2TokenizerFast, "[CLS]", "[SEP]")
    else:
        raise ValueError(arch)
    vocab_size = len(tokenizer)
    pad = tokenizer.pad_token_id
    if arch == "distilbert":
        config: Any = tf.DistilBertConfig(
            vocab_size=vocab_size,
            dim=32,
            n_layers=layers,
            n_heads=4,
            hidden_dim=64,
            max_position_embeddings=80,
            pad_token_id=pad,
            **{k: common[k] for k in ("num_labels", "id2label", "label2id")},
        )
        model: Any = tf.DistilBertForSequenceClassification(config)
    else:
        config_cls, model_cls = {
            "bert": (tf.BertConfig, tf.BertForSequenceClassification),
            "electra": (tf.ElectraConfig, tf.ElectraForSequenceClassification),
            "roberta": (tf.RobertaConfig, tf.RobertaForSequenceClassification),
            "xlm-roberta": (tf.XLMRobertaConfig, tf.XLMRobertaForSequenceClassification),
            "deberta-v2": (tf.DebertaV2Config, tf.DebertaV2ForSequenceClassification),
        }[arch]
        extra: dict[str, Any] = {}
        if arch == "electra":
            extra["embedding_size"] = 16
        if arch == "deberta-v2":  # DeBERTa-v3 style: relative attention, no token types
            extra.update(
                relative_attention=True,
                pos_att_type=["p2c", "c2p"],
                position_buckets=16,
                max_relative_positions=-1,
                type_vocab_size=0,
                position_biased_input=False,
                share_att_key=True,
                norm_rel_ebd="layer_norm",
            )
        config = config_cls(vocab_size=vocab_size, pad_token_id=pad, **common, **extra)
        torch.manual_seed(0)
        model = model_cls(config)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder
