"""`compress bench model` on a real tiny ONNX model and its folder, end to end."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from compress.benchmark.bench_data import align_labels, examples, model_labels
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
    assert entry["n_eval"] == len(TEXTS)
    assert entry["accuracy"] == _accuracy_here(model_dir / "model.onnx", TEXTS, LABELS)
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


def test_bad_inputs_are_clear_errors(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A path that is no model, results of another schema, and a runtime that cannot run the
    file are each one error naming the problem (exit 2 at the command line)."""
    with pytest.raises(ModelLoadError, match="not an ONNX file"):
        detect(tmp_path)
    (tmp_path / "bench.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(UserError, match="schema_version 99"):
        load_results(tmp_path / "bench.json")
    code = main(["bench", "model", str(model_dir / "model.onnx"), "--runtime", "torch"])
    assert code == 2
    assert "error: runtime 'torch' cannot run a onnx model (use: " in capsys.readouterr().err


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
    assert expected != pytest.approx(0.5)  # ids left in the file's order would score 1 - it


def _accuracy_here(model: Path, texts: list[str], labels: list[int]) -> float:
    """Accuracy of the ONNX file on `texts`, computed here: ONNX Runtime on the tokenizer's
    padded batch, argmax against `labels`."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(model.parent)
    feeds = tokenizer(texts, padding=True, return_tensors="np")
    names = {i.name for i in session.get_inputs()}
    logits = session.run(None, {k: v.astype(np.int64) for k, v in feeds.items() if k in names})
    return float(np.mean(logits[0].argmax(-1) == np.asarray(labels)))


def test_model_options_reach_the_measurement(
    model_dir: Path, reviews: Path, tmp_path: Path
) -> None:
    """--eval-samples scores the first N rows (the accuracy computed here from the model's own
    logits), --no-accuracy leaves accuracy out even for labelled data, and --threads, --task,
    the batch sizes, sequence lengths, warm-up and repetitions are what the result records."""
    model = model_dir / "model.onnx"
    args = ["bench", "model", str(model), "--data", str(reviews), "--threads", "1"]
    args += ["--task", "text-classification", "--batch-sizes", "3", "--sequence-lengths", "8"]
    args += ["--warmup", "0", "--repetitions", "2", "--quiet"]
    assert main([*args, "--eval-samples", "4", "--out", str(tmp_path / "a")]) == 0
    result = load_results(tmp_path / "a" / "bench.json")
    (entry,) = result["runtimes"]
    first = examples(str(reviews), "text-classification").test.head(4)  # the rows it scores
    assert entry["n_eval"] == 4
    assert entry["accuracy"] == _accuracy_here(model, first.texts, first.labels.tolist())
    method = result["method"]
    assert (method["threads"], method["task"], method["warmup"]) == (1, "text-classification", 0)
    assert (method["repetitions"], method["batch_sizes"], method["sequence_lengths"]) == (
        2,
        [3],
        [8],
    )
    assert [(r["batch_size"], r["sequence_length"]) for r in entry["latency"]] == [(3, 8)]
    assert main([*args, "--no-accuracy", "--out", str(tmp_path / "b")]) == 0
    result = load_results(tmp_path / "b" / "bench.json")
    (entry,) = result["runtimes"]
    assert not {"accuracy", "macro_f1", "n_eval"} & set(entry)
    assert result["method"]["labels"] == "not scored: latency only"


@pytest.mark.parametrize("runtime", ["onnxruntime-cuda", "onnxruntime-tensorrt", "torch-cuda"])
def test_a_gpu_runtime_this_machine_lacks_is_one_clear_error(
    model_dir: Path,
    reviews: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    runtime: str,
) -> None:
    """A GPU runtime this machine cannot start exits 2 with one line saying what is missing,
    and writes no results."""
    import onnxruntime as ort
    import torch

    providers = {
        "onnxruntime-cuda": ["CUDAExecutionProvider"],
        "onnxruntime-tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    }
    missing = [p for p in providers.get(runtime, []) if p not in ort.get_available_providers()]
    if runtime.startswith("onnxruntime") and not missing:
        pytest.skip(f"this machine's ONNX Runtime has {runtime}'s providers")
    if runtime == "torch-cuda" and torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device here")
    model = model_dir / ("model.onnx" if runtime.startswith("onnxruntime") else "")
    out = tmp_path / "out"
    args = ["bench", "model", str(model), "--runtime", runtime, "--data", str(reviews)]
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    if missing:
        assert err.startswith(f"error: ONNX Runtime here lacks {', '.join(missing)} (available: ")
        assert err.endswith("; install onnxruntime-gpu\n")
    else:
        assert err == "error: runtime needs CUDA, and torch sees no CUDA device\n"
    assert not out.exists()


def test_an_engine_that_cannot_run_here_and_a_runtime_of_another_kind_are_refused(
    model_dir: Path, reviews: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench model x.engine` exits 2 naming the engine and why this machine cannot run it (no
    TensorRT, or no GPU); a runtime for another kind of model names the ones that fit."""
    from compress.trt.runtime import engine_unavailable

    folder = tmp_path / "engine"
    folder.mkdir()
    for file in model_dir.glob("*.json"):
        shutil.copyfile(file, folder / file.name)
    shutil.copyfile(model_dir / "vocab.txt", folder / "vocab.txt")
    (folder / "model.engine").write_bytes(b"not an engine")
    args = ["bench", "model", str(folder / "model.engine"), "--data", str(reviews), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    reason = engine_unavailable()
    if reason is not None:
        assert err == f"error: cannot run the TensorRT engine model.engine: {reason}\n"
    else:  # a GPU with TensorRT: the file itself is refused
        assert err.startswith(f"error: {folder / 'model.engine'}: ")
    assert not (tmp_path / "out").exists()
    assert main(["bench", "model", str(model_dir / "model.onnx"), "--runtime", "tensorrt"]) == 2
    assert capsys.readouterr().err == (
        "error: runtime 'tensorrt' cannot run a onnx model "
        "(use: onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt)\n"
    )
    assert main(["bench", "model", str(model_dir), "--runtime", "onnxruntime"]) == 2
    assert "runtime 'onnxruntime' cannot run a torch model (use: torch, " in capsys.readouterr().err
