from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compress.benchmark.report import (
    build_report,
    load_report,
    method_info,
    render_markdown,
    render_terminal,
    write_report,
)
from compress.benchmark.settings import BenchmarkSettings
from compress.errors import UserError


def _lat(p50: float) -> dict[str, float]:
    return {
        "p50_ms": p50,
        "p90_ms": p50 * 1.1,
        "p99_ms": p50 * 1.3,
        "mean_ms": p50 * 1.05,
        "std_ms": p50 * 0.1,
        "throughput_per_s": 1000.0 / p50,
    }


def _stage(
    name: str,
    variant: str,
    acc: float,
    f1: float,
    b1: float,
    b8: float,
    size: float,
    params: float,
    runtime: str = "onnxruntime",
    target: str = "cpu",
) -> dict[str, Any]:
    return {
        "stage": name,
        "variant": variant,
        "step": f"00-{name}",
        "runtime": runtime,
        "precision": "int8" if "int8" in variant else "fp32",
        "target": target,
        "accuracy": acc,
        "macro_f1": f1,
        "n_eval": 1000,
        "latency": {"b1": _lat(b1), "b8": _lat(b8)},
        "size_bytes": int(size),
        "parameters": int(params),
    }


@pytest.fixture()
def stages() -> list[dict[str, Any]]:
    original = _stage("fine_tune", "fp32", 0.9, 0.89, 10.0, 40.0, 400e6, 100e6, "torch", "portable")
    int8 = _stage("quantize", "int8-cpu", 0.885, 0.88, 2.5, 10.0, 100e6, 100e6)
    trt = _stage(
        "quantize", "int8-tensorrt", 0.887, 0.881, 4.0, 20.0, 100e6, 100e6, target="tensorrt"
    )
    distilled = _stage("distill", "fp32", 0.88, 0.87, 5.0, 16.0, 200e6, 50e6, "torch", "portable")
    original["predictions"] = [1, 0, 1, 1]
    int8["predictions"] = [1, 0, 0, 1]
    return [original, int8, trt, distilled]


@pytest.fixture()
def method() -> dict[str, Any]:
    return method_info(BenchmarkSettings(), max_length=128)


def test_build_report_ratios(stages: list[dict[str, Any]], method: dict[str, Any]) -> None:
    report = build_report(stages, method)
    assert report["schema_version"] == 2 and report["method"] == method
    orig, int8, _, distilled = report["stages"]
    assert orig["vs_original"]["size_ratio"] == pytest.approx(1.0)
    assert orig["vs_original"]["speedup"] == {"b1": pytest.approx(1.0), "b8": pytest.approx(1.0)}
    assert orig["vs_original"]["accuracy_delta_points"] == pytest.approx(0.0)

    vs = int8["vs_original"]
    assert vs["size_ratio"] == pytest.approx(4.0)
    assert vs["parameter_ratio"] == pytest.approx(1.0)
    assert vs["speedup"] == {"b1": pytest.approx(4.0), "b8": pytest.approx(4.0)}
    assert vs["accuracy_delta_points"] == pytest.approx(-1.5)
    assert vs["macro_f1_delta_points"] == pytest.approx(-1.0)
    assert vs["agreement"] == pytest.approx(0.75)

    vs = distilled["vs_original"]
    assert vs["size_ratio"] == pytest.approx(2.0)
    assert vs["parameter_ratio"] == pytest.approx(2.0)
    assert vs["speedup"] == {"b1": pytest.approx(2.0), "b8": pytest.approx(2.5)}
    assert vs["accuracy_delta_points"] == pytest.approx(-2.0)
    assert "agreement" not in vs

    assert all("predictions" not in s for s in report["stages"])
    assert "predictions" in stages[0]  # the input is left as it was
    json.dumps(report)


def test_build_report_needs_stages(method: dict[str, Any]) -> None:
    with pytest.raises(UserError):
        build_report([], method)


def test_method_info(method: dict[str, Any]) -> None:
    assert method["warmup"] == 10 and method["repetitions"] == 100 and method["threads"] == 2
    assert method["batch_sizes"] == [1, 8] and method["sequence_length"] == 64
    assert method["versions"]["onnxruntime"] and method["versions"]["torch"]
    assert method["cpu"] and method["date"]


def test_render_markdown(stages: list[dict[str, Any]], method: dict[str, Any]) -> None:
    text = render_markdown(build_report(stages, method))
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(stages)
    header = table[0]
    columns = "Accuracy|Δacc|Macro-F1|b1 p50|b1 p90|b1 p99|b8 p50|throughput|Size MB|Params M"
    for column in [*columns.split("|"), "×smaller", "×faster"]:
        assert column in header
    assert "fine_tune (original)" in table[2]
    int8_row = next(line for line in table if "int8-cpu" in line)
    cells = [c.strip() for c in int8_row.strip("|").split("|")]
    assert cells[:4] == ["quantize", "int8-cpu", "onnxruntime", "cpu"]
    assert cells[4:8] == ["88.50%", "-1.50", "0.8800", "2.50"]  # accuracy, Δ, F1, b1 p50
    assert cells[-5:] == ["100.0", "100.00", "4.00×", "4.00×", "75.00%"]  # MB, M, ×, ×, agree
    assert "Agreement" in header
    assert "int8-tensorrt" in text and "distill" in text
    assert "[batch, 64]" in text and "2 intra-op thread" in text
    assert "different artifacts" in text


def test_render_terminal(stages: list[dict[str, Any]], method: dict[str, Any]) -> None:
    text = render_terminal(build_report(stages, method))
    lines = text.splitlines()
    assert len(lines) == 1 + len(stages)
    assert "×faster" in lines[0]
    assert "int8-tensorrt" in lines[3] and "2.50×" in lines[3]


def test_write_and_load_report(
    stages: list[dict[str, Any]], method: dict[str, Any], tmp_path: Path
) -> None:
    report = build_report(stages, method)
    out = tmp_path / "bench"
    written = write_report(report, out)
    assert [p.name for p in written] == ["report.json", "report.md", "report.png", "report.html"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    rows = page.count("<tr>")
    assert rows == len(stages) + 1  # header + one row per stage, as in report.md
    assert load_report(out) == report
    assert load_report(out / "report.json") == report

    no_plot = write_report(report, tmp_path / "flat", plot=False)
    assert [p.name for p in no_plot] == ["report.json", "report.md", "report.html"]
    assert not (tmp_path / "flat" / "report.png").exists()
    assert "<img" not in (tmp_path / "flat" / "report.html").read_text()


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no benchmark report"):
        load_report(tmp_path / "missing.json")
    with pytest.raises(UserError, match="no benchmark report"):
        load_report(tmp_path)
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(UserError, match="not a benchmark report"):
        load_report(tmp_path / "garbage.json")
    (tmp_path / "other.json").write_text(json.dumps({"stages": "x"}))
    with pytest.raises(UserError, match="not a benchmark report"):
        load_report(tmp_path / "other.json")


def test_flops_accounting(stages: list[dict[str, Any]], method: dict[str, Any]) -> None:
    """With MACs per token, each stage reports its FLOPs cut and how much of it became speed."""
    assert "×fewer FLOPs" not in render_markdown(build_report(stages, method))
    original = {**stages[0], "macs_per_token": 10_000_000}
    pruned = {**stages[1], "macs_per_token": 5_000_000}
    report = build_report([original, pruned], method)
    vs = report["stages"][1]["vs_original"]
    assert vs["flops_ratio"] == pytest.approx(2.0)
    for key, speedup in vs["speedup"].items():
        assert vs["speedup_per_flops"][key] == pytest.approx(speedup / 2.0)
    text = render_markdown(report)
    assert "×fewer FLOPs" in text and "2.00×" in text


def test_markdown_names_the_layers_with_the_largest_int8_error(
    stages: list[dict[str, Any]], method: dict[str, Any]
) -> None:
    assert "largest INT8 error" not in render_markdown(build_report(stages, method))
    ranked = [{"node": "/layer.2/MatMul", "added": 0.415}, {"node": "/pooler/Gemm", "added": 0.17}]
    stages[-1]["quantization_error"] = ranked
    text = render_markdown(build_report(stages, method))
    assert "## Layers with the largest INT8 error" in text
    assert "`/layer.2/MatMul` (0.41), `/pooler/Gemm` (0.17)" in text


def test_speedup_is_the_median_of_interleaved_rounds(
    stages: list[dict[str, Any]], method: dict[str, Any]
) -> None:
    original, int8 = stages[0], stages[1]
    original["latency"]["b1"]["round_p50_ms"] = [10.0, 10.0, 10.0, 10.0, 30.0]
    int8["latency"]["b1"]["round_p50_ms"] = [2.5, 2.0, 5.0, 2.5, 3.0]  # ratios 4, 5, 2, 4, 10
    report = build_report(stages, method)
    vs = report["stages"][1]["vs_original"]
    assert vs["speedup"]["b1"] == pytest.approx(4.0)
    assert vs["speedup_rounds"]["b1"] == {"min": 2.0, "max": 10.0, "rounds": 5}
    assert vs["speedup"]["b8"] == pytest.approx(4.0)  # no rounds: the ratio of the p50s
    assert "b8" not in vs["speedup_rounds"]
    assert "4.00× (2.00–10.00)" in render_markdown(report)
