"""Benchmark suites: YAML files naming recipes, their baselines and the budgets to hold.

    name: flagship
    budgets: {max_accuracy_drop: 1.0, max_latency_regression: 1.2, max_size_growth: 1.05}
    runs:
      - recipe: ../../recipes/distil_int8.yaml
        baseline: ../baselines/distil_int8.json
        set: [benchmark.repetitions=50]

`compress bench run SUITE` runs every recipe (re-using finished steps in its
run folder), then checks each report against its baseline with the suite's
budgets, exactly as `compress bench compare` does. Paths are relative to the
suite file. Every problem in the file is reported as `file:line key: message`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError

from compress.benchmark.compare import Check, Thresholds
from compress.errors import RecipeError, UserError
from compress.options import StrictOptions
from compress.recipe.yaml_lines import format_path, load_yaml

log = logging.getLogger(__name__)


class Budgets(StrictOptions):
    """The limits a suite holds every run to (see `compress bench compare`)."""

    max_accuracy_drop: float = Field(Thresholds.max_accuracy_drop, ge=0)
    max_latency_regression: float = Field(Thresholds.max_latency_regression, ge=1)
    max_size_growth: float = Field(Thresholds.max_size_growth, ge=1)

    def thresholds(self) -> Thresholds:
        return Thresholds(self.max_accuracy_drop, self.max_latency_regression, self.max_size_growth)


class SuiteRun(StrictOptions):
    """One recipe of a suite and the baseline its report is held to."""

    recipe: str = Field(..., description="recipe file, relative to the suite")
    baseline: str | None = Field(None, description="baseline report.json (or a run folder)")
    set: list[str] = Field(default_factory=list, description="recipe overrides, KEY=VALUE")
    name: str | None = Field(None, description="run folder name; default: the recipe's name")


class SuiteDoc(StrictOptions):
    """A suite file: its name, the budgets, and the recipes it runs."""

    name: str | None = None
    budgets: Budgets = Budgets()
    runs: list[SuiteRun] = Field(..., min_length=1)


@dataclass(frozen=True)
class Suite:
    doc: SuiteDoc
    file: Path

    @property
    def name(self) -> str:
        return self.doc.name or self.file.stem

    def path(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.file.parent / path).resolve()


def load_suite(file: Path) -> Suite:
    """Read and validate a suite file; recipes are validated too, before anything runs."""
    from compress.recipe import load_recipe

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read the suite ({exc})") from None
    data, lines = load_yaml(text, str(file))
    if not isinstance(data, dict):
        raise RecipeError("a suite must be a mapping of keys", file=file, line=1)
    try:
        doc = SuiteDoc.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = tuple(err["loc"])
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        raise RecipeError(
            message, file=file, line=lines.line_of(where), key=format_path(where) or None
        ) from None
    suite = Suite(doc, file)
    for index, run in enumerate(doc.runs):
        where = ("runs", index)
        recipe = suite.path(run.recipe)
        if not recipe.is_file():
            raise RecipeError(
                f"recipe {recipe} not found",
                file=file,
                line=lines.line_of((*where, "recipe")),
                key=format_path((*where, "recipe")),
            )
        if run.baseline is not None and not suite.path(run.baseline).exists():
            raise RecipeError(
                f"baseline {suite.path(run.baseline)} not found",
                file=file,
                line=lines.line_of((*where, "baseline")),
                key=format_path((*where, "baseline")),
            )
        load_recipe(recipe, run.set)
    return suite


def run_suite(
    suite: Suite, out: Path, baseline: Path | None = None, progress: bool = False
) -> dict[str, list[Check]]:
    """Run every recipe into `out/<name>` and compare its report with its baseline."""
    from compress.artifacts import load_report
    from compress.benchmark.compare import compare_reports
    from compress.recipe import load_recipe
    from compress.run.runner import run_recipe

    results: dict[str, list[Check]] = {}
    for index, run in enumerate(suite.doc.runs):
        recipe = load_recipe(suite.path(run.recipe), run.set)
        name = run.name or recipe.name
        log.info(f"suite {suite.name} [{index + 1}/{len(suite.doc.runs)}]: {name}")
        run_recipe(recipe, out / name, progress=progress)
        reference = baseline if baseline is not None else _baseline(suite, run)
        if reference is None:
            log.info(f"  {name}: no baseline; report written, nothing compared")
            results[name] = []
            continue
        current = load_report(out / name)
        results[name] = compare_reports(
            load_report(reference), current, suite.doc.budgets.thresholds()
        )
    return results


def _baseline(suite: Suite, run: SuiteRun) -> Path | None:
    return suite.path(run.baseline) if run.baseline is not None else None


def flatten(results: dict[str, list[Check]]) -> list[Check]:
    """All checks, each stage name prefixed with its run."""
    out: list[Check] = []
    for name, checks in results.items():
        out.extend(
            Check(f"{name}/{c.stage}", c.metric, c.baseline, c.current, c.limit, c.passed)
            for c in checks
        )
    return out
