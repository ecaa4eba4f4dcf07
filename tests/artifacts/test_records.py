"""report.json's contract: the typed models, version upgrade and refusal, the JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compress.artifacts import load_report
from compress.artifacts.records import (
    SCHEMA_VERSION,
    RecordError,
    Report,
    report_schema,
    validate_report,
    validate_trials,
)
from compress.errors import UserError


def _report(version_key: str = "schema_version", version: int = SCHEMA_VERSION) -> dict:
    return {
        version_key: version,
        "method": {"task": "text-classification", "batch_sizes": [1], "cpu_features": ["avx2"]},
        "stages": [
            {
                "stage": "input",
                "variant": "fp32",
                "step": "00-input",
                "runtime": "torch",
                "precision": "fp32",
                "target": "portable",
                "accuracy": 0.8,
                "latency": {"b1": {"p50_ms": 3.0, "p90_ms": 4.0}},
                "vs_original": {"speedup": {"b1": 1.0}, "size_ratio": 1.0},
            }
        ],
        "skipped": [{"step": "05-tensorrt", "pass": "tensorrt", "reason": "no TensorRT"}],
    }


def test_a_version_1_report_is_read_as_the_current_version(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text(json.dumps(_report("report_version", 1)))
    report = load_report(tmp_path)
    assert report["schema_version"] == SCHEMA_VERSION and "report_version" not in report
    assert report["stages"][0]["latency"]["b1"]["p50_ms"] == 3.0
    assert Report.model_validate(report).skipped[0].pass_ == "tensorrt"


@pytest.mark.parametrize("version", [0, 3, "2"])
def test_an_unknown_version_is_refused_in_one_line(tmp_path: Path, version: object) -> None:
    (tmp_path / "report.json").write_text(json.dumps(_report(version=version)))  # type: ignore[arg-type]
    with pytest.raises(UserError) as caught:
        load_report(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and f"version {version!r}" in message and "reads versions" in message


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r["stages"][0].pop("variant"), "stages.0.variant"),
        (lambda r: r["stages"][0].update(target="gpu"), "stages.0.target"),
        (lambda r: r["stages"][0]["latency"]["b1"].update(p50_ms="fast"), "stages.0.latency.b1"),
        (lambda r: r.pop("method"), "method"),
    ],
)
def test_a_malformed_report_is_refused_naming_the_field(change: Any, where: str) -> None:
    report = _report()
    change(report)
    with pytest.raises(RecordError) as caught:
        validate_report(report, "r.json")
    assert str(caught.value).startswith(f"r.json: {where}") and "\n" not in str(caught.value)


def test_the_writer_refuses_a_report_its_readers_could_not_read(tmp_path: Path) -> None:
    from compress.benchmark.report import write_report

    report = _report()
    report["stages"][0]["runtime"] = "pytorch"
    with pytest.raises(RecordError, match=r"stages\.0\.runtime"):
        write_report(report, tmp_path, plot=False)
    assert not (tmp_path / "report.json").exists()


def test_trial_rows_are_checked() -> None:
    row = {"number": 3, "state": "complete", "values": {"a": 1}, "val_accuracy": 0.9}
    validate_trials([row])
    with pytest.raises(RecordError, match="trial 3: state"):
        validate_trials([{**row, "state": "finished"}])


def test_the_schema_lists_the_registered_tasks_and_is_printed_by_the_cli() -> None:
    from compress.tasks import TASK_NAMES

    schema = report_schema(list(TASK_NAMES))
    task = schema["$defs"]["Method"]["properties"]["task"]["anyOf"][0]
    assert task["enum"] == sorted(TASK_NAMES)
    assert {"schema_version", "method", "stages"} <= set(schema["properties"])
    printed = subprocess.run(
        [sys.executable, "-m", "compress", "report", "--schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(printed.stdout) == schema


def test_a_manifest_states_whether_its_step_ran_or_was_skipped(tmp_path: Path) -> None:
    from compress.artifacts.step import StepResult, write_manifest

    base = {"pass": "tensorrt", "key": "k1", "artifact": {"kind": "onnx", "key": "a"}}
    ran = write_manifest(tmp_path, {**base, "metrics": {"parity": 0.0}})
    assert ran["state"] == "ran" and "reason" not in ran
    skipped = write_manifest(tmp_path, {**base, "metrics": {"skipped": "no TensorRT here"}})
    assert (skipped["state"], skipped["reason"]) == ("skipped", "no TensorRT here")
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["state"] == "skipped"

    def result(manifest: dict) -> StepResult:
        return StepResult("tensorrt", tmp_path, None, manifest, reused=True)  # type: ignore[arg-type]

    assert result(skipped).skipped == "no TensorRT here"
    assert result(ran).skipped is None
    older = {k: v for k, v in skipped.items() if k not in ("state", "reason")}
    assert result(older).skipped == "no TensorRT here"  # written before `state` existed
    with pytest.raises(RecordError, match="artifact"):
        write_manifest(tmp_path, {"pass": "tensorrt", "key": "k", "artifact": None})
