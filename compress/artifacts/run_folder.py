"""The one reader (and writer) of a run folder's files.

    runs/distil_int8/
      recipe.resolved.yaml   the recipe as validated, every default filled in
      reproduce.json         hashes of the recipe, data and input model; seed; versions
      00-input/ 01-.../      one step folder per pass (see `compress.artifacts.step`)
      report.json/.md/.html/.png

The runner writes and re-reads steps through it, `compress report` and the
bundle read finished runs through it; nothing else parses these files.

    >>> run = RunFolder(Path("runs/distil_int8"))            # doctest: +SKIP
    >>> [s.folder.name for s in run.steps()]                 # doctest: +SKIP
    ['00-input', '01-fine_tune', ...]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.artifacts.files import read_json, write_json_atomic
from compress.artifacts.step import MANIFEST_VERSION, StepResult, finished_step
from compress.artifacts.step_store import StepStore
from compress.errors import UserError

RESOLVED_RECIPE = "recipe.resolved.yaml"
REPRODUCE = "reproduce.json"
REPORT_FILES = ("report.json", "report.md", "report.png", "report.html")
INPUT_STEP = "00-input"
STEP_FOLDER = re.compile(r"^\d{2}-[a-z0-9_]+$")


def step_folder(index: int, name: str) -> str:
    """The folder of a recipe's pass number `index` (0-based): `01-fine_tune`, ..."""
    return f"{index + 1:02d}-{name}"


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk; with a `store`, finished steps are shared with other runs."""

    path: Path
    store: StepStore | None = None

    @property
    def resolved_recipe(self) -> Path:
        return self.path / RESOLVED_RECIPE

    def require(self) -> RunFolder:
        """This run folder, or a `UserError` when `path` is not one."""
        if not self.resolved_recipe.is_file():
            raise UserError(f"{self.path}: not a run folder (no {RESOLVED_RECIPE})")
        return self

    def recipe(self) -> dict[str, Any]:
        """The resolved recipe as written (every section and default present)."""
        import yaml

        try:
            data = yaml.safe_load(self.require().resolved_recipe.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{self.resolved_recipe}: cannot read it ({exc})") from None
        if not isinstance(data, dict):
            raise UserError(f"{self.resolved_recipe}: not a resolved recipe")
        return data

    def write_recipe(self, resolved: dict[str, Any]) -> None:
        import yaml

        self.resolved_recipe.write_text(yaml.safe_dump(resolved, sort_keys=False))

    def step(self, folder: str) -> StepResult | None:
        """The finished step in `folder` (e.g. `02-distill`), or None when it did not finish."""
        return finished_step(self.path / folder)

    def require_step(self, folder: str) -> StepResult:
        """The finished step in `folder`, or a `UserError` saying why it cannot be used."""
        step = self.step(folder)
        if step is None:
            where = self.path / folder
            written = read_json(where / "manifest.json")
            if isinstance(written, dict) and written.get("manifest_version") != MANIFEST_VERSION:
                raise UserError(
                    f"{where}: written by another version of compress (manifest version "
                    f"{written.get('manifest_version')}); run the recipe again"
                )
            raise UserError(f"{where}: step did not finish; run the recipe again")
        return step.require_unchanged()

    def steps(self) -> list[StepResult]:
        """Every finished step, in folder order (`00-input` first)."""
        if not self.path.is_dir():
            return []
        folders = sorted(p.name for p in self.path.iterdir() if STEP_FOLDER.match(p.name))
        return [step for name in folders if (step := self.step(name)) is not None]

    def reproduce(self) -> dict[str, Any]:
        """What `reproduce.json` recorded (empty when there is none)."""
        data = read_json(self.path / REPRODUCE)
        return data if isinstance(data, dict) else {}

    def write_reproduce(self, data: dict[str, Any]) -> None:
        write_json_atomic(self.path / REPRODUCE, data)

    def report(self) -> dict[str, Any] | None:
        """The run's report.json, or None when the run has none (yet)."""
        file = self.path / REPORT_FILES[0]
        return load_report(file) if file.is_file() else None


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report written by `compress.benchmark.report.write_report` (file or its folder)."""
    file = Path(path)
    if file.is_dir():
        file = file / REPORT_FILES[0]
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no benchmark report at {file}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{file} is not a benchmark report ({exc})") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("stages"), list)
        or not isinstance(data.get("method"), dict)
    ):
        raise UserError(f"{file} is not a benchmark report (no 'stages' and 'method')")
    from compress.artifacts.records import RecordError, validate_report

    try:
        return validate_report(data, str(file))  # an older version upgraded, or refused
    except RecordError as exc:
        raise UserError(str(exc)) from None
