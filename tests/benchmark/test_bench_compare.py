from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from compress.benchmark.compare import Thresholds, compare_reports, junit_xml, render_checks
from compress.cli import main


def _stage(name: str, acc: float, b1: float, b8: float, size: int) -> dict[str, Any]:
    return {
        "stage": name,
        "variant": "v",
        "accuracy": acc,
        "latency": {"b1": {"p50_ms": b1}, "b8": {"p50_ms": b8}},
        "size_bytes": size,
    }


@pytest.fixture()
def baseline() -> dict[str, Any]:
    return {
        "report_version": 1,
        "method": {},
        "stages": [
            _stage("original", 0.80, 20.0, 100.0, 1000),
            _stage("int8", 0.79, 2.0, 15.0, 100),
        ],
    }


def failed(checks: list[Any]) -> set[tuple[str, str]]:
    return {(c.stage, c.metric) for c in checks if not c.passed}


def test_identical_reports_pass(baseline: dict[str, Any]) -> None:
    checks = compare_reports(baseline, copy.deepcopy(baseline), Thresholds())
    assert checks and not failed(checks)
    # the original is the latency reference, so only the later stage has latency checks
    assert {c.metric for c in checks if c.stage == "original:v"} == {"accuracy", "size_bytes"}


def test_a_slower_machine_is_not_a_regression(baseline: dict[str, Any]) -> None:
    current = copy.deepcopy(baseline)
    for stage in current["stages"]:
        for lat in stage["latency"].values():
            lat["p50_ms"] *= 2.5  # everything slower, ratios unchanged
    assert not failed(compare_reports(baseline, current, Thresholds()))


def test_each_kind_of_regression_is_caught(baseline: dict[str, Any]) -> None:
    current = copy.deepcopy(baseline)
    int8 = current["stages"][1]
    int8["accuracy"] = 0.78  # -1 point > 0.5 allowed
    int8["latency"]["b8"]["p50_ms"] = 15.0 * 1.3  # 30% slower relative to the original
    int8["size_bytes"] = 120  # 20% bigger
    assert failed(compare_reports(baseline, current, Thresholds())) == {
        ("int8:v", "accuracy"),
        ("int8:v", "b8 latency / original"),
        ("int8:v", "size_bytes"),
    }
    loose = Thresholds(max_accuracy_drop=1.5, max_latency_regression=1.5, max_size_growth=1.25)
    assert not failed(compare_reports(baseline, current, loose))


def test_missing_stage_fails(baseline: dict[str, Any]) -> None:
    current = copy.deepcopy(baseline)
    current["stages"].pop()
    assert failed(compare_reports(baseline, current, Thresholds())) == {("int8:v", "present")}


def test_reports_render_and_junit(baseline: dict[str, Any]) -> None:
    current = copy.deepcopy(baseline)
    current["stages"][1]["accuracy"] = 0.70
    checks = compare_reports(baseline, current, Thresholds())
    lines = render_checks(checks).splitlines()
    assert lines[-1] == f"{len(checks) - 1} passed, 1 failed"
    (row,) = [line for line in lines if line.startswith("FAIL")]
    assert row.split() == ["FAIL", "int8:v", "accuracy", "0.79", "0.7", ">=", "0.7850"]
    suite = ET.fromstring(junit_xml(checks))
    assert suite.get("tests") == str(len(checks)) and suite.get("failures") == "1"
    (failing,) = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert (failing.get("classname"), failing.get("name")) == ("int8:v", "accuracy")
    failure = failing.find("failure")
    assert failure is not None
    assert failure.get("message") == "baseline 0.79, current 0.7, limit >= 0.7850"


def test_cli_exit_codes(baseline: dict[str, Any], tmp_path: Path) -> None:
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    base.write_text(json.dumps(baseline))
    cur.write_text(json.dumps(baseline))
    junit = tmp_path / "junit.xml"
    assert main(["bench", "compare", str(base), str(cur), "--junit", str(junit)]) == 0
    assert ET.parse(junit).getroot().get("failures") == "0"
    worse = copy.deepcopy(baseline)
    worse["stages"][1]["size_bytes"] = 1000
    cur.write_text(json.dumps(worse))
    out = tmp_path / "checks.json"
    assert main(["bench", "compare", str(base), str(cur), "--json", str(out)]) == 3
    assert json.loads(out.read_text())["passed"] is False
    assert main(["bench", "compare", str(base), str(tmp_path / "none.json")]) == 2


def test_committed_baseline_is_a_valid_report() -> None:
    from compress.benchmark.report import load_report

    path = Path(__file__).parents[2] / "bench" / "baselines" / "distil_int8.json"
    report = load_report(path)
    assert report["stages"][0]["stage"] == "fine_tune"
    checks = compare_reports(report, report, Thresholds())
    assert len(checks) > 10 and not failed(checks)


def _with_rounds(stage: dict[str, Any], rounds: list[float]) -> None:
    """A stage whose b1 was timed in interleaved rounds with the original (speedup per round)."""
    stage.setdefault("vs_original", {})["speedup"] = {"b1": sorted(rounds)[len(rounds) // 2]}
    stage["vs_original"]["speedup_rounds"] = {
        "b1": {"min": min(rounds), "max": max(rounds), "rounds": len(rounds)}
    }


def test_latency_gate_uses_the_median_of_rounds(baseline: dict[str, Any]) -> None:
    _with_rounds(baseline["stages"][1], [10.0, 10.0, 10.0, 10.0, 10.0])
    noisy = copy.deepcopy(baseline)
    # two disturbed rounds, the median round as fast as the baseline: not a regression,
    # although a pooled p50 taken from the disturbed runs would say so
    noisy["stages"][1]["latency"]["b1"]["p50_ms"] = 4.0
    _with_rounds(noisy["stages"][1], [4.0, 6.0, 10.0, 10.0, 11.0])
    checks = [
        c for c in compare_reports(baseline, noisy, Thresholds()) if c.metric.startswith("b1")
    ]
    assert len(checks) == 1 and checks[0].passed and "rounds" in checks[0].limit
    slower = copy.deepcopy(baseline)
    # most rounds 40% slower relative to the original, one lucky round as fast as before
    _with_rounds(slower["stages"][1], [6.0, 6.0, 6.0, 7.0, 10.0])
    assert ("int8:v", "b1 latency / original") in failed(
        compare_reports(baseline, slower, Thresholds())
    )


@pytest.mark.parametrize(
    ("flag", "change", "within", "beyond", "figure"),
    [
        # int8 accuracy 0.79 -> 0.785: a drop of 0.5 points
        ("--max-accuracy-drop", ("accuracy", 0.785), "0.6", "0.4", "accuracy"),
        # int8 b8 latency / original 0.15 -> 0.195: 1.3 times the baseline's ratio
        ("--max-latency-regression", ("b8", 19.5), "1.35", "1.25", "b8 latency / original"),
        # int8 size 100 -> 120 bytes: 1.2 times
        ("--max-size-growth", ("size_bytes", 120), "1.25", "1.15", "size_bytes"),
    ],
)
def test_each_cli_threshold_passes_within_and_fails_beyond(
    baseline: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    change: tuple[str, float],
    within: str,
    beyond: str,
    figure: str,
) -> None:
    """`bench compare --max-*`: a regression inside the given threshold exits 0, one beyond it
    exits 3 (RegressionFound) naming the stage and figure, and --json records the threshold."""
    current = copy.deepcopy(baseline)
    key, value = change
    int8 = current["stages"][1]
    if key == "b8":
        int8["latency"]["b8"]["p50_ms"] = value
    else:
        int8[key] = value
    base, cur, out = tmp_path / "base.json", tmp_path / "cur.json", tmp_path / "checks.json"
    base.write_text(json.dumps(baseline))
    cur.write_text(json.dumps(current))
    args = ["bench", "compare", str(base), str(cur), "--json", str(out)]
    assert main([*args, flag, within]) == 0
    checks = json.loads(out.read_text())
    name = flag.removeprefix("--").replace("-", "_")
    assert checks["passed"] is True and checks["thresholds"][name] == float(within)
    assert "0 failed" in capsys.readouterr().out
    assert main([*args, flag, beyond]) == 3
    printed = capsys.readouterr()
    assert printed.err == f"error: 1 check(s) regressed: int8:v {figure}\n"
    (row,) = [line for line in printed.out.splitlines() if line.startswith("FAIL")]
    assert row.split()[1] == "int8:v" and figure in row
    checks = json.loads(out.read_text())
    assert checks["thresholds"][name] == float(beyond) and checks["passed"] is False
    assert [c["metric"] for c in checks["checks"] if not c["passed"]] == [figure]
