import json
from pathlib import Path

import numpy as np
import pytest

from compress.data.loaders import encode_labels, load_dataset
from compress.data.spec import DataSpec
from compress.errors import DataError
from tests.conftest import write_labelled_csv


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows))
    return path


def small_spec(source: Path, **kw: object) -> DataSpec:
    return DataSpec(source=str(source), validation_size=2, test_size=3, **kw)  # type: ignore[arg-type]


def test_csv_split_is_fixed_and_disjoint(tmp_path: Path) -> None:
    rows = [(f"text {i}", "pos" if i % 2 else "neg") for i in range(20)]
    path = write_csv(tmp_path / "d.csv", rows)
    a = load_dataset(small_spec(path))
    b = load_dataset(small_spec(path))
    assert a.label_names == ["neg", "pos"]
    assert (len(a.train), len(a.validation), len(a.test)) == (15, 2, 3)
    assert a.test.texts == b.test.texts and a.key == b.key
    assert not set(a.train.texts) & set(a.test.texts)
    for split in (a.train, a.validation, a.test):
        for text, label in zip(split.texts, split.labels, strict=True):
            assert a.label_names[label] == ("pos" if int(text.split()[1]) % 2 else "neg")
    c = load_dataset(small_spec(path, split_seed=1))
    assert c.test.texts != a.test.texts and c.key != a.key


def test_jsonl_and_json_with_column_mapping(tmp_path: Path) -> None:
    """Mapped columns are read from .jsonl and .json, each text with its own label."""
    records = [{"review": f"r{i}", "stars": i % 3} for i in range(12)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (tmp_path / "d.json").write_text(json.dumps(records))
    for name in ("d.jsonl", "d.json"):
        data = load_dataset(small_spec(tmp_path / name, text_column="review", label_column="stars"))
        assert data.label_names == ["0", "1", "2"]
        assert len(data.train) == 7
        texts = []  # "r{i}" is read from `review` and keeps its own `stars` (i % 3)
        for split in (data.train, data.validation, data.test):
            for text, label in zip(split.texts, split.labels, strict=True):
                texts.append(text)
                assert data.label_names[label] == str(int(text[1:]) % 3), (name, text)
        assert sorted(texts) == sorted(r["review"] for r in records)


def test_relative_path_is_resolved_against_the_recipe(tmp_path: Path) -> None:
    write_csv(tmp_path / "d.csv", [(f"t{i}", str(i % 2)) for i in range(10)])
    data = load_dataset(small_spec(Path("d.csv")), base_dir=tmp_path)
    assert len(data.train) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,label\n", "empty"),
        ("text,label\na,1\nb,1\nc,1\nd,1\ne,1\nf,1\n", "at least two classes"),
        ("text,lbl\na,1\n", "no column 'label'"),
    ],
)
def test_bad_data(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(small_spec(path))


def test_non_utf8_and_missing_and_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"text,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset(small_spec(path))
    with pytest.raises(DataError, match="not found"):
        load_dataset(small_spec(tmp_path / "missing.csv"))
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"d.jsonl:2: not valid JSON"):
        load_dataset(small_spec(bad))


def test_too_small_for_the_split(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "y"), ("c", "x")])
    with pytest.raises(DataError, match="cannot hold"):
        load_dataset(small_spec(path))


def test_label_outside_given_label_set() -> None:
    with pytest.raises(DataError, match="row 3 has label 'maybe'"):
        encode_labels(["yes", "no", "maybe"], ["no", "yes"], "d.csv")
    ids, names = encode_labels(["yes", "no", "yes"], ["no", "yes"], "d.csv")
    assert ids.tolist() == [1, 0, 1] and names == ["no", "yes"]


def test_unknown_source_without_datasets_package() -> None:
    with pytest.raises(DataError, match="neither an offline dataset"):
        load_dataset(DataSpec(source="some-user/some-dataset"))


def test_offline_rotten_tomatoes_is_the_real_corpus() -> None:
    data = load_dataset(DataSpec())
    assert data.label_names == ["rotten", "fresh"]
    assert (len(data.train), len(data.validation), len(data.test)) == (10008, 800, 2000)
    total = np.concatenate([data.train.labels, data.validation.labels, data.test.labels])
    assert int(total.sum()) == 7403  # fresh snippets in the corpus
    assert all(isinstance(t, str) and t for t in data.test.texts)


def test_sentences_split_labelled_data_as_the_classification_reader_does(tmp_path: Path) -> None:
    """Embedders read labels where there are some: the same rows as a classifier, no prompt."""
    for spec in (
        DataSpec(),
        DataSpec(
            source=str(write_labelled_csv(tmp_path, 120, seed=1)), validation_size=10, test_size=20
        ),
    ):
        texts = load_dataset(spec, reader="texts")
        sentences = load_dataset(spec, reader="sentences")
        assert sentences.key == texts.key
        assert sentences.test.inputs == texts.test.inputs
        assert list(sentences.test.labels) == list(texts.test.labels)
        assert sentences.label_names == texts.label_names
        assert "prompt" not in sentences.notes


def test_sentences_take_unlabelled_texts_that_the_classification_reader_refuses(
    tmp_path: Path,
) -> None:
    path = tmp_path / "texts.csv"
    path.write_text("text\n" + "".join(f"sentence number {i}\n" for i in range(50)))
    spec = DataSpec(source=str(path), validation_size=5, test_size=10)
    with pytest.raises(DataError, match="label"):
        load_dataset(spec, reader="texts")
    data = load_dataset(spec, reader="sentences")
    assert data.label_names == [] and set(data.test.labels.tolist()) == {-1}
    assert len(data.test.inputs) == 10
    assert len(data.train.inputs) + len(data.validation.inputs) + 10 == 50
