"""Text corpora for causal LMs: offline, .txt, tables with and without labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from compress.data.corpus import load_corpus
from compress.data.spec import DataSpec
from compress.errors import DataError

SMALL = {"validation_size": 4, "test_size": 4}


def test_a_txt_file_is_one_text_per_line_without_labels(tmp_path: Path) -> None:
    """Each non-blank line of a .txt is one text, all of them split, none labelled."""
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"line number {i}" for i in range(20)) + "\n\n   \n")
    data = load_corpus(DataSpec(source=str(path), **SMALL))
    texts = [*data.train.texts, *data.validation.texts, *data.test.texts]
    assert sorted(texts) == sorted(f"line number {i}" for i in range(20))  # blank lines dropped
    assert (len(data.validation), len(data.test)) == (4, 4)
    assert data.label_names == [] and set(data.train.labels.tolist()) == {-1}
    assert "prompt" not in data.notes  # no labels: no task score


def test_a_table_with_labels_gets_a_prompt_and_label_words(tmp_path: Path) -> None:
    """A labelled table keeps each text's label and gets the prompt and label words."""
    path = tmp_path / "reviews.csv"
    path.write_text(
        "text,label\n" + "".join(f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    )
    data = load_corpus(DataSpec(source=str(path), prompt="Q: {text} A:", **SMALL))
    assert data.label_names == ["neg", "pos"]
    for split in (data.train, data.validation, data.test):  # each review keeps its own label
        for text, label in zip(split.texts, split.labels, strict=True):
            assert data.label_names[label] == ("pos" if int(text.split()[1]) % 2 else "neg")
    assert data.notes == {"prompt": "Q: {text} A:", "label_words": ["neg", "pos"]}
    without = tmp_path / "texts.jsonl"
    without.write_text("".join(f'{{"text": "t {i}"}}\n' for i in range(20)))
    assert load_corpus(DataSpec(source=str(without), **SMALL)).label_names == []


def test_the_offline_corpus_is_the_classification_split_with_sentiment_words() -> None:
    data = load_corpus(DataSpec())
    assert (len(data.validation), len(data.test)) == (800, 2000)
    assert data.notes["label_words"] == ["negative", "positive"]
    assert data.notes["prompt"] == "Review: {text}\nSentiment:"
    keyed = load_corpus(DataSpec(label_words=["bad", "good"]))
    assert keyed.key != data.key  # prompted training reads the words: steps must not be reused


def test_bad_prompts_and_words_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"must contain \{text\}"):
        DataSpec(prompt="no place for the text")
    with pytest.raises(DataError, match="label_words has 3 words for 2 labels"):
        load_corpus(DataSpec(label_words=["a", "b", "c"]))
    path = tmp_path / "corpus.txt"
    path.write_text("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n")
    with pytest.raises(DataError, match="the texts have no labels"):
        load_corpus(
            DataSpec(source=str(path), label_words=["x", "y"], validation_size=2, test_size=2)
        )
