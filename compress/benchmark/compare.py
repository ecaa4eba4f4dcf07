"""Compare a report with a committed baseline: the CI regression gate.

Stages are matched by (stage, variant). For each matched stage:

- accuracy may drop by at most `max_accuracy_drop` points;
- latency is compared as a RATIO to the original model measured in the same
  run, so a slower or busier CI machine does not flake the gate: the current
  ratio may be at most `max_latency_regression` times the baseline's, at every
  batch size both reports measured. The ratio is the median over the
  interleaved rounds of the per-round ratio (reports without rounds: stage p50
  / original p50): a run in which one or two rounds were disturbed neither
  fails a good model nor, by luck, passes a slower one. The rounds' range is
  shown beside the limit;
- size on disk may grow by at most `max_size_growth` times.

A stage of the baseline that the current report lacks is a failure too.

Under GitHub Actions (`$GITHUB_STEP_SUMMARY` set), `to_step_summary` appends
the checks as a Markdown table to the job's summary page.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:  # pydantic stays out of the CLI's parser, which imports `Thresholds`
    from compress.artifacts.records import Report, Stage

log = logging.getLogger(__name__)
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"  # GitHub Actions: a file shown on the job's page


@dataclass(frozen=True)
class Thresholds:
    max_accuracy_drop: float = 0.5
    max_latency_regression: float = 1.20
    max_size_growth: float = 1.05


@dataclass(frozen=True)
class Check:
    """One metric of one stage, baseline against current."""

    stage: str
    metric: str
    baseline: float | None
    current: float | None
    limit: str
    passed: bool


def _key(stage: Stage) -> str:
    return f"{stage.stage}:{stage.variant}"


def _typed(report: Report | Mapping[str, Any]) -> Report:
    """`report` as a `Report` (a dict from `load_report`, or an older version's, upgraded)."""
    from compress.artifacts.records import Report, upgrade_report

    if isinstance(report, Report):
        return report
    return Report.model_validate(upgrade_report(dict(report)))


def _relative(stage: Stage, original: Stage, batch: str) -> tuple[float, float, float] | None:
    """Stage latency / original latency at `batch`: (median, best round, worst round).

    From the report's speedup, the median over interleaved rounds of the
    per-round ratio, where the report has rounds; else the ratio of the p50s.
    """
    vs = stage.vs_original
    speedup = (vs.speedup or {}).get(batch) if vs else None
    spread = (vs.speedup_rounds or {}).get(batch) if vs else None
    if speedup is not None and speedup > 0 and spread is not None:
        return 1 / speedup, 1 / spread.max, 1 / spread.min
    mine, ref = stage.latency.get(batch), original.latency.get(batch)
    if mine is None or ref is None or not ref.p50_ms:
        return None
    ratio = mine.p50_ms / ref.p50_ms
    return ratio, ratio, ratio


def compare_reports(
    baseline: Report | Mapping[str, Any], current: Report | Mapping[str, Any], limits: Thresholds
) -> list[Check]:
    """Every check of `current` against `baseline` (see the module docstring).

    Either report may be a `Report` or its JSON data (as `load_report` returns it).
    """
    base_report, cur_report = _typed(baseline), _typed(current)
    checks: list[Check] = []
    base_stages = {_key(s): s for s in base_report.stages}
    cur_stages = {_key(s): s for s in cur_report.stages}
    base_orig, cur_orig = base_report.stages[0], cur_report.stages[0]
    for key, base in base_stages.items():
        cur = cur_stages.get(key)
        if cur is None:
            checks.append(Check(key, "present", 1.0, None, "stage must exist", False))
            continue
        b_acc, c_acc = base.accuracy, cur.accuracy
        if b_acc is not None and c_acc is not None:
            floor = b_acc - limits.max_accuracy_drop / 100
            checks.append(
                Check(key, "accuracy", b_acc, c_acc, f">= {floor:.4f}", c_acc >= floor - 1e-12)
            )
        if base is not base_orig:
            for batch in base.latency:
                b_rel = _relative(base, base_orig, batch)
                c_rel = _relative(cur, cur_orig, batch)
                if b_rel is None or c_rel is None:
                    continue
                ceiling = b_rel[0] * limits.max_latency_regression
                limit = f"<= {ceiling:.4f}"
                if c_rel[1] != c_rel[2]:
                    limit += f" (rounds {c_rel[1]:.4f}-{c_rel[2]:.4f})"
                checks.append(
                    Check(
                        key,
                        f"{batch} latency / original",
                        b_rel[0],
                        c_rel[0],
                        limit,
                        c_rel[0] <= ceiling,
                    )
                )
        b_size, c_size = base.size_bytes, cur.size_bytes
        if b_size is not None and c_size is not None:
            ceiling = b_size * limits.max_size_growth
            checks.append(
                Check(key, "size_bytes", b_size, c_size, f"<= {ceiling:.0f}", c_size <= ceiling)
            )
    return checks


def render_checks(checks: list[Check]) -> str:
    """A fixed-width table of the checks, failures marked."""
    rows = [("", "stage", "metric", "baseline", "current", "limit")]
    for c in checks:
        rows.append(
            (
                "ok" if c.passed else "FAIL",
                c.stage,
                c.metric,
                "—" if c.baseline is None else f"{c.baseline:.4g}",
                "—" if c.current is None else f"{c.current:.4g}",
                c.limit,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    failed = sum(not c.passed for c in checks)
    lines.append(f"{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines)


def junit_xml(checks: list[Check], name: str = "compress.bench.compare") -> str:
    """The checks as a JUnit XML test suite (one test case per check)."""
    failed = sum(not c.passed for c in checks)
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<testsuite name={quoteattr(name)} tests="{len(checks)}" failures="{failed}">',
    ]
    for c in checks:
        case = f"<testcase classname={quoteattr(c.stage)} name={quoteattr(c.metric)}"
        if c.passed:
            out.append(case + "/>")
        else:
            message = f"baseline {c.baseline}, current {c.current}, limit {c.limit}"
            out.append(
                case
                + f"><failure message={quoteattr(message)}>{escape(message)}</failure></testcase>"
            )
    out.append("</testsuite>")
    return "\n".join(out) + "\n"


def checks_json(checks: list[Check], limits: Thresholds) -> dict[str, Any]:
    return {
        "thresholds": asdict(limits),
        "passed": all(c.passed for c in checks),
        "checks": [asdict(c) for c in checks],
    }


def render_json(checks: list[Check], limits: Thresholds) -> str:
    """`checks_json` as the text of a JSON file."""
    return json.dumps(checks_json(checks, limits), indent=2) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(checks: list[Check], title: str = "compress: baseline checks") -> str:
    """The checks as a Markdown table (failures first), for a CI job's summary."""
    failed = sum(not c.passed for c in checks)
    verdict = "all passed" if not failed else f"**{failed} failed**"
    lines = [
        f"### {title}: {verdict} ({len(checks)} checks)",
        "",
        "| | stage | metric | baseline | current | limit |",
        "|---|---|---|---|---|---|",
    ]
    for c in sorted(checks, key=lambda c: c.passed):
        lines.append(
            f"| {'ok' if c.passed else '**FAIL**'} | {_cell(c.stage)} | {_cell(c.metric)} | "
            f"{'—' if c.baseline is None else f'{c.baseline:.4g}'} | "
            f"{'—' if c.current is None else f'{c.current:.4g}'} | {_cell(c.limit)} |"
        )
    lines.append(f"\n{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def to_step_summary(checks: list[Check], environ: Mapping[str, str] | None = None) -> Path | None:
    """Append `render_markdown(checks)` to the file `$GITHUB_STEP_SUMMARY` names, if it is set.

    The gate's result does not depend on it: a summary that cannot be written is a warning.
    """
    name = (os.environ if environ is None else environ).get(STEP_SUMMARY, "")
    if not name:
        return None
    path = Path(name)
    try:
        with path.open("a", encoding="utf-8") as summary:
            summary.write(render_markdown(checks) + "\n")
    except OSError as exc:
        log.warning("%s: cannot append the checks (%s)", path, exc.strerror or exc)
        return None
    return path
