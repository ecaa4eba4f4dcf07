"""Tiny Hugging Face classifiers of each supported architecture, with the tokenizer kind it uses.

Every model is built from a config (random weights) and saved as a normal
folder: BERT, ELECTRA and DistilBERT with WordPiece, RoBERTa with byte-level
BPE, XLM-R and DeBERTa-v2 with a SentencePiece-style Unigram model, each
tokenizer trained on the tests' sentences plus words those never use.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from functools import reduce
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
        torch.manual_seed(0)
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


# Written out here rather than read from compress.text.adapters, so that the references below
# do not share the passes' table: base model -> transformer blocks, then block -> attention
# output projection (input: heads x head size), first FFN linear (rows: neurons), second FFN
# linear (columns: neurons), as transformers names them.
BLOCK_PATHS = {
    "distilbert": ("transformer.layer", "attention.out_lin", "ffn.lin1", "ffn.lin2"),
    **{
        family: ("encoder.layer", "attention.output.dense", "intermediate.dense", "output.dense")
        for family in ("bert", "electra", "roberta", "xlm-roberta", "deberta-v2", "vit")
    },
}


def at(module: Any, path: str) -> Any:
    """`module.a.b` for path "a.b"."""
    return reduce(getattr, path.split("."), module)


def blocks(model: Any) -> Any:
    """The ModuleList of transformer blocks of a BERT-family (or ViT) model."""
    return at(model.base_model, BLOCK_PATHS[model.config.model_type][0])


def row_indices(full: Any, part: Any) -> list[int]:
    """The index in `full` of each row of `part`: rows are compared exactly, each must match one."""
    import torch

    same = (full.unsqueeze(0) == part.unsqueeze(1)).flatten(2).all(-1)  # [part rows, full rows]
    assert torch.all(same.sum(1) == 1), "a surviving row matches no (or several) original rows"
    return [int(i) for i in same.float().argmax(1)]


def with_blocks(original: Any, kept: Sequence[int]) -> Any:
    """A copy of `original` whose ModuleList of blocks holds only the blocks `kept`, in order."""
    import torch

    ref = copy.deepcopy(original).eval()
    parent, _, name = BLOCK_PATHS[ref.config.model_type][0].rpartition(".")
    setattr(at(ref.base_model, parent), name, torch.nn.ModuleList(blocks(ref)[i] for i in kept))
    ref.config.num_hidden_layers = len(kept)
    return ref


def masked_reference(
    original: Any,
    kept_layers: Sequence[int],
    pruned_heads: Mapping[int, Sequence[int]],
    pruned: Any,
) -> Any:
    """A copy of `original` computing what a correct pruning into `pruned` computes, by hand.

    Only `kept_layers` stay in the ModuleList; in the remaining blocks (new numbers) the columns
    of the attention output projection that read `pruned_heads` are zeroed (the head adds
    nothing), and the FFN neurons `pruned` lacks (found by matching `pruned`'s first-FFN rows
    against the original ones) get zero input rows, bias and output columns.
    """
    import torch

    ref = with_blocks(original, kept_layers)
    _, attention_out, ffn_in, ffn_out = BLOCK_PATHS[ref.config.model_type]
    size = ref.config.hidden_size // ref.config.num_attention_heads
    with torch.no_grad():
        for i, (block, small) in enumerate(zip(blocks(ref), blocks(pruned), strict=True)):
            out = at(block, attention_out)
            for head in pruned_heads.get(i, []):
                out.weight[:, head * size : (head + 1) * size] = 0
            first, second = at(block, ffn_in), at(block, ffn_out)
            kept = row_indices(first.weight, at(small, ffn_in).weight)
            lost = [j for j in range(first.out_features) if j not in kept]
            first.weight[lost] = 0
            first.bias[lost] = 0
            second.weight[:, lost] = 0
    return ref


def assert_same_function(model: Any, reference: Any, inputs: Mapping[str, Any]) -> None:
    """`model` and `reference` agree to 1e-5 on `inputs`: in logits, and in the last hidden
    states, which LayerNorm keeps O(1) where a random classifier's logits are about 0.01."""
    import torch

    with torch.inference_mode():
        got = model.eval()(**inputs, output_hidden_states=True)
        expected = reference.eval()(**inputs, output_hidden_states=True)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.hidden_states[-1], expected.hidden_states[-1], atol=1e-5, rtol=0)


def last_hidden(model: Any, inputs: Mapping[str, Any]) -> Any:
    """The last hidden states of `model` on `inputs`."""
    import torch

    with torch.inference_mode():
        return model.eval()(**inputs, output_hidden_states=True).hidden_states[-1]


def assert_student_is_teacher_layers(
    student: Any, teacher: Any, keep: Sequence[int], inputs: Mapping[str, Any]
) -> None:
    """Every student weight is the teacher's (student block i: teacher block keep[i]), and the
    student computes the teacher with the other blocks dropped from its list by hand."""
    import torch

    t_state, s_state = teacher.state_dict(), student.state_dict()
    assert len(s_state) < len(t_state)
    block = re.compile(r"(\.layer\.)(\d+)\.")
    for key, value in s_state.items():
        source = block.sub(lambda m: f"{m[1]}{keep[int(m[2])]}.", key)
        assert torch.equal(value, t_state[source]), key
    assert_same_function(student, with_blocks(teacher, keep), inputs)
