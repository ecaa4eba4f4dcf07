"""`compress bench compare` under GitHub Actions: its table appended to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from compress.benchmark.compare import (
    STEP_SUMMARY,
    Check,
    Thresholds,
    compare_reports,
    render_markdown,
    to_step_summary,
)
from compress.cli import main


def _report(int8_accuracy: float) -> dict[str, Any]:
    def stage(name: str, acc: float, b1: float, size: int) -> dict[str, Any]:
        latency = {"b1": {"p50_ms": b1}}
        return {
            "stage": name,
            "variant": "v",
            "step": f"0{len(name)}-{name}",  # what a report of any version has
            "runtime": "onnxruntime",
            "precision": "fp32",
            "target": "cpu",
            "accuracy": acc,
            "latency": latency,
            "size_bytes": size,
        }

    return {
        "report_version": 1,
        "method": {},
        "stages": [stage("original", 0.80, 20.0, 1000), stage("int8", int8_accuracy, 2.0, 100)],
    }


def _table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| ") and "---" not in line
    ][1:]  # the header row left out


def test_compare_appends_its_table_to_the_step_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    base.write_text(json.dumps(_report(0.79)))
    cur.write_text(json.dumps(_report(0.70)))  # 9 points below the baseline: a regression
    summary = tmp_path / "summary.md"
    summary.write_text("## an earlier step\n")
    monkeypatch.setenv(STEP_SUMMARY, str(summary))

    assert main(["bench", "compare", str(base), str(cur)]) == 3
    text = summary.read_text()
    assert text.startswith("## an earlier step\n")  # appended, not replaced
    assert "### compress: baseline checks: **1 failed** (5 checks)" in text
    rows = _table_rows(text)
    assert len(rows) == 5
    assert rows[0] == ["**FAIL**", "int8:v", "accuracy", "0.79", "0.7", ">= 0.7850"]
    assert all(row[0] == "ok" for row in rows[1:])
    assert "4 passed, 1 failed" in text

    assert main(["bench", "compare", str(base), str(base)]) == 0  # a second gate: a second table
    again = summary.read_text()
    assert again.startswith(text) and "### compress: baseline checks: all passed" in again


def test_no_summary_without_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STEP_SUMMARY, raising=False)
    checks = compare_reports(_report(0.79), copy.deepcopy(_report(0.79)), Thresholds())
    assert to_step_summary(checks) is None
    target = tmp_path / "s.md"
    assert to_step_summary(checks, {STEP_SUMMARY: str(target)}) == target
    assert target.read_text().count("| ok |") == len(checks)


def test_an_unwritable_summary_does_not_change_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    base = tmp_path / "base.json"
    base.write_text(json.dumps(_report(0.79)))
    monkeypatch.setenv(STEP_SUMMARY, str(tmp_path / "missing-folder" / "summary.md"))
    assert main(["bench", "compare", str(base), str(base)]) == 0
    assert "cannot append the checks" in caplog.text


def test_markdown_cells_escape_pipes() -> None:
    check = Check("a|b:v", "accuracy", 0.5, None, ">= 0.4", False)
    row = render_markdown([check]).splitlines()[4]
    assert row == "| **FAIL** | a\\|b:v | accuracy | 0.5 | — | >= 0.4 |"
