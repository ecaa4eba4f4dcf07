"""`compress bench model` on a real tiny ONNX model and its folder, end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from compress.benchmark.model_bench import SCHEMA_VERSION, detect, load_results
from compress.cli import main
from compress.errors import ModelLoadError, UserError

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
