from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact
from compress.errors import DataError
from compress.passes.base import PassContext
from compress.passes.prune_vocab import PruneVocabConfig, apply
from compress.text.vocab import vocabulary
from tests.conftest import SPECIAL


def _assert_same_logits(before: Path, after: Path, texts: list[str]) -> None:
    """The models in `before` and `after` give the same logits (1e-5) on `texts`."""
    logits = []
    for folder in (before, after):
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        with torch.inference_mode():
            logits.append(model(**tokenizer(texts, padding=True, return_tensors="pt")).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=0)


def test_vocabulary_shrinks_and_kept_text_is_unchanged(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]
) -> None:
    ctx = make_ctx("pv")
    corpus = ctx.data.train.texts
    out = apply(tiny_hf, PruneVocabConfig(), ctx)

    old_tok = AutoTokenizer.from_pretrained(tiny_hf.path)
    new_tok = AutoTokenizer.from_pretrained(out.path)
    new_model = AutoModelForSequenceClassification.from_pretrained(out.path).eval()
    old_model = AutoModelForSequenceClassification.from_pretrained(tiny_hf.path).eval()

    used = {t for text in corpus for t in old_tok.tokenize(text)}
    new_vocab = vocabulary(out.path)
    assert set(new_vocab) == used | set(old_tok.all_special_tokens)
    assert sorted(new_vocab.values()) == list(range(len(new_vocab)))  # dense ids
    assert new_model.config.vocab_size == len(new_vocab)
    assert new_model.get_input_embeddings().weight.shape[0] == len(new_vocab)
    assert ctx.metrics["vocab_after"] == len(new_vocab) < ctx.metrics["vocab_before"]

    # every id the new tokenizer emits exists in the new embedding, special tokens included
    text = corpus[0]
    ids = new_tok(text)["input_ids"]
    assert max(ids) < len(new_vocab)
    assert new_tok.convert_ids_to_tokens(ids) == old_tok.convert_ids_to_tokens(
        old_tok(text)["input_ids"]
    )
    with torch.inference_mode():
        before = old_model(**old_tok(corpus[:8], padding=True, return_tensors="pt")).logits
        after = new_model(**new_tok(corpus[:8], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(before, after, atol=1e-5, rtol=0)


def test_unseen_words_become_unk(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good movie\n")
    ctx = make_ctx("unk")
    out = apply(tiny_hf, PruneVocabConfig(corpus=str(corpus)), ctx)
    new_tok = AutoTokenizer.from_pretrained(out.path)
    assert "superb" in vocabulary(tiny_hf.path)
    assert new_tok.tokenize("good superb movie") == ["good", "[UNK]", "movie"]
    assert 0 < ctx.metrics["validation_unk_share"] < 1


def test_reserve_and_min_count(tiny_hf: Artifact, make_ctx: Callable[[str], PassContext]) -> None:
    """min_count above every count keeps only the first `reserve` ids (and the specials), and
    text of those words is unchanged."""
    ctx = make_ctx("rs")
    out = apply(tiny_hf, PruneVocabConfig(reserve=10, min_count=1000), ctx)
    kept = vocabulary(out.path)
    old = vocabulary(tiny_hf.path)
    by_id = {i: t for t, i in old.items()}
    assert set(kept) == {by_id[i] for i in range(10)} | set(
        AutoTokenizer.from_pretrained(tiny_hf.path).all_special_tokens
    )
    kept_words = [by_id[i] for i in range(10) if by_id[i] not in SPECIAL]  # good, great, ...
    _assert_same_logits(tiny_hf.path, out.path, [" ".join(kept_words), kept_words[0]])


def test_corpus_file(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("good movie\nbad film\n")
    out = apply(tiny_hf, PruneVocabConfig(corpus=str(corpus)), make_ctx("file"))
    assert {"good", "movie", "bad", "film"} <= set(vocabulary(out.path))
    assert "awful" not in vocabulary(out.path)
    _assert_same_logits(tiny_hf.path, out.path, ["good movie", "bad film", "film good"])
    with pytest.raises(DataError, match="not found"):
        apply(tiny_hf, PruneVocabConfig(corpus=str(tmp_path / "none.txt")), make_ctx("none"))
