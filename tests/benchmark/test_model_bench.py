"""`compress bench model` on a real tiny ONNX model and its folder, end to end."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from compress.benchmark.bench_data import align_labels, model_labels
from compress.benchmark.evaluate import evaluate
from compress.benchmark.model_bench import (
    SCHEMA_VERSION,
    ModelBenchSpec,
    bench_model,
    detect,
    load_results,
)
from compress.benchmark.runtimes import OrtRuntime
from compress.cli import main
from compress.data import Dataset, Split
from compress.errors import ModelLoadError, UserError
from compress.tasks import get_task

from .conftest import LABELS, TEXTS


@pytest.fixture()
def reviews(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(TEXTS, LABELS, strict=True))
    return path


def test_onnx_model_end_to_end_json_markdown_html(
    model_dir: Path, reviews: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench"
    code = main(
        [
            "bench", "model", str(model_dir / "model.onnx"),
            "--batch-sizes", "1,4", "--sequence-lengths", "16,32",
            "--warmup", "1", "--repetitions", "5",
            "--data", str(reviews), "--out", str(out), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    result = load_results(out / "bench.json")
    assert result["schema_version"] == SCHEMA_VERSION and result["kind"] == "onnx"
    (entry,) = result["runtimes"]
    shapes = [(r["batch_size"], r["sequence_length"]) for r in entry["latency"]]
    assert shapes == [(1, 16), (4, 16), (1, 32), (4, 32)]
    for row in entry["latency"]:
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput_per_s"] > 0
    assert entry["n_eval"] == len(TEXTS) and 0 <= entry["accuracy"] <= 1
    assert result["parameters"] > 0 and result["size_bytes"] > 0
    assert result["method"]["sequence_lengths"] == [16, 32]
    markdown = (out / "bench.md").read_text()
    assert "| onnxruntime | 4 | 32 |" in markdown
    page = (out / "bench.html").read_text()
    assert page.startswith("<!doctype html>") and "<table>" in page
    assert ("data:image/png;base64," in page) == (out / "bench.png").is_file()
    assert "onnxruntime" in capsys.readouterr().out


def test_torch_folder_and_round_trip(model_dir: Path, reviews: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    args = ["bench", "model", str(model_dir), "--batch-sizes", "2", "--sequence-lengths", "8"]
    args += ["--warmup", "0", "--repetitions", "3", "--data", str(reviews), "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["kind"] == "torch" and result["runtimes"][0]["runtime"] == "torch"
    assert result["macs_per_token"] > 0
    assert json.loads(json.dumps(result)) == load_results(out / "bench.json")


def test_bad_inputs_are_clear_errors(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not an ONNX file"):
        detect(tmp_path)
    (tmp_path / "bench.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(UserError, match="schema_version 99"):
        load_results(tmp_path / "bench.json")
    code = main(["bench", "model", str(model_dir / "model.onnx"), "--runtime", "torch"])
    assert code == 2


def _dataset(names: list[str], labels: list[int]) -> Dataset:
    split = Split([f"text {i}" for i in range(len(labels))], np.asarray(labels, dtype=np.int64))
    return Dataset(names, split, split, split, "reviews.csv", "key")


def test_data_labels_are_renumbered_to_the_models_by_name() -> None:
    # a file's labels are numbered in sorted order; this model says 0 = rotten, 1 = fresh
    data = _dataset(["fresh", "rotten"], [0, 1, 1, 0])
    aligned, how = align_labels(data, ["rotten", "fresh"])
    assert aligned.test.labels.tolist() == [1, 0, 0, 1] and "by name" in how
    assert aligned.label_names == ["rotten", "fresh"]
    assert aligned.train.labels.tolist() == [1, 0, 0, 1]
    same, how = align_labels(_dataset(["rotten", "fresh"], [0, 1]), ["rotten", "fresh"])
    assert same.test.labels.tolist() == [0, 1] and "are the model's" in how
    # integer labels (an .npz of ImageNet ids) are the model's ids
    ids, how = align_labels(_dataset(["0", "1", "2"], [2, 0, 1]), ["tench", "goldfish", "shark"])
    assert ids.test.labels.tolist() == [2, 0, 1] and "label ids" in how
    untouched, how = align_labels(data, None)
    assert untouched.test.labels.tolist() == [0, 1, 1, 0] and "as given" in how
    unlabelled = replace(_dataset([], [-1, -1]), labelled=False)  # the offline photos
    kept, how = align_labels(unlabelled, ["rotten", "fresh"])
    assert kept.test.labels.tolist() == [-1, -1] and "no labels" in how
    with pytest.raises(UserError, match=r"\['positive'\] are not among the model's"):
        align_labels(_dataset(["fresh", "positive"], [0, 1]), ["rotten", "fresh"])


def test_bench_scores_a_file_against_the_models_label_order(
    model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "rotten", "1": "fresh"}
    config["label2id"] = {"rotten": 0, "fresh": 1}
    (folder / "config.json").write_text(json.dumps(config))
    assert model_labels(folder) == ["rotten", "fresh"]
    named = tmp_path / "named.csv"
    with named.open("w", newline="") as fh:
        csv.writer(fh).writerows([("text", "label")] + [
            (t, ["rotten", "fresh"][y]) for t, y in zip(TEXTS, LABELS, strict=True)
        ])  # fmt: skip
    spec = ModelBenchSpec(folder / "model.onnx", batch_sizes=[1], repetitions=1, warmup=0)
    by_name = bench_model(replace(spec, data=str(named)), progress=False)
    assert by_name["method"]["labels"] == "matched by name to the model's"
    onnx = OrtRuntime(folder / "model.onnx", threads=1)
    tokenizer = get_task("text-classification").load_processor(folder)
    truth = Split(list(TEXTS), np.asarray(LABELS, dtype=np.int64))
    expected = evaluate(onnx, tokenizer, truth, 64, 8, False, get_task("text-classification"))[
        "accuracy"
    ]
    assert by_name["runtimes"][0]["accuracy"] == pytest.approx(expected)
