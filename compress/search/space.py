"""A search space: recipe keys and the values `compress search` may give them.

    # space.yaml: one recipe key per line, its choices or its range
    passes[1].distill.layers: [2, 3, 4]
    passes[2].prune.ffn: {low: 0.5, high: 0.85, step: 0.05}
    passes[5].quantize.method: [minmax, percentile, entropy]

A list is a set of choices; `{low, high}` a range (integers when both ends
are, with an optional `step`; `log: true` samples on a log scale). The space
is validated against the recipe before anything runs, every problem as
`space.yaml:LINE key: message`: the key must name an option of the pass at
that index (or a recipe section's field), and every choice (each end of a
range) must make a valid recipe.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from compress.errors import RecipeError, did_you_mean
from compress.options import StrictOptions
from compress.recipe import RecipeDoc, key_parts, set_key, validate_recipe
from compress.recipe.registry import get_pass, pass_names
from compress.recipe.yaml_lines import KeyPath, LineMap, load_yaml_file

if TYPE_CHECKING:
    import optuna


class Range(StrictOptions):
    """`{low, high, step, log}`: a numeric range."""

    low: float
    high: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class Knob:
    """One searched recipe key: its choices, or its numeric range."""

    key: str
    path: KeyPath
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> Any:
        """The value this trial takes (Optuna samples it)."""
        if self.choices is not None:
            labels = [_label(c) for c in self.choices]
            picked = trial.suggest_categorical(self.key, labels)
            return self.choices[labels.index(picked)]
        assert self.low is not None and self.high is not None
        if self.integer:
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        value = trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)
        return round(value, 10) if self.step is not None else value  # 0.75, not 0.7500000000000001

    def param(self, value: Any) -> Any:
        """`value` as Optuna records it (choices that are lists are recorded as JSON text)."""
        return _label(value) if self.choices is not None else value

    def holds(self, value: Any) -> bool:
        """Whether `value` is one this knob can take."""
        if self.choices is not None:
            return any(_label(value) == _label(c) for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        assert self.low is not None and self.high is not None
        if self.integer and not float(value).is_integer():
            return False
        return self.low <= value <= self.high


def _label(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class Space:
    """A validated search space: its file and its knobs, in file order."""

    file: Path
    knobs: tuple[Knob, ...]
    text: str

    def apply(self, data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """A copy of the raw recipe `data` with each knob's value set."""
        out = copy.deepcopy(data)
        for knob in self.knobs:
            set_key(out, knob.key, copy.deepcopy(values[knob.key]), where=str(self.file))
        return out

    def current(self, resolved: dict[str, Any]) -> dict[str, Any] | None:
        """The values the recipe gives the knobs (its defaults included: `resolved` is the
        validated recipe's), or None when one lies outside the space."""
        values = {}
        for knob in self.knobs:
            found, value = _lookup(resolved, knob.path)
            if not found or not knob.holds(value):
                return None
            values[knob.key] = value
        return values


def _lookup(data: Any, path: KeyPath) -> tuple[bool, Any]:
    node = data
    for part in path:
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def load_space(
    file: Path, recipe_data: dict[str, Any], recipe_lines: LineMap, recipe_file: Path
) -> Space:
    """Read and validate `file` against the raw recipe it searches."""
    raw, lines = load_yaml_file(file, "search space")
    if not isinstance(raw, dict) or not raw:
        raise RecipeError(
            "a search space is a mapping of recipe keys to choices or ranges",
            file=file,
            line=1,
            hint="e.g. 'passes[1].distill.layers: [2, 3, 4]'",
        )
    knobs = []
    for key, value in raw.items():
        fail = _Fail(file, lines.line_of((key,)), str(key))
        path = key_parts(str(key))
        _check_key(path, recipe_data, fail)
        knob = _knob(str(key), path, value, fail)
        for probe in knob.choices if knob.choices is not None else (knob.low, knob.high):
            _check_value(knob, probe, recipe_data, recipe_lines, recipe_file, fail)
        knobs.append(knob)
    return Space(file=file, knobs=tuple(knobs), text=file.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Fail:
    """Makes the error of one space key, at its line."""

    file: Path
    line: int | None
    key: str

    def __call__(self, message: str, hint: str | None = None) -> RecipeError:
        return RecipeError(message, file=self.file, line=self.line, key=self.key, hint=hint)


def _check_key(path: KeyPath, data: dict[str, Any], fail: _Fail) -> None:
    head = path[0] if path else ""
    if head != "passes":
        if head not in RecipeDoc.model_fields:
            raise fail("not a recipe key", did_you_mean(str(head), RecipeDoc.model_fields))
        return
    passes = data.get("passes") or []
    if len(path) < 4 or not isinstance(path[1], int) or not isinstance(path[2], str):
        raise fail(
            "a pass option is written passes[INDEX].PASS.OPTION", "e.g. passes[1].distill.layers"
        )
    index, name = path[1], path[2]
    if index >= len(passes):
        raise fail(f"the recipe has {len(passes)} passes (indices 0-{len(passes) - 1})")
    entry = passes[index]
    actual = (
        entry
        if isinstance(entry, str)
        else next(iter(entry), None)
        if isinstance(entry, dict)
        else None
    )
    if actual != name:
        hint = f"passes[{index}] is {actual}" if actual else None
        raise fail(f"passes[{index}] is not {name}", hint or did_you_mean(name, pass_names()))
    fields = get_pass(name).config.model_fields
    if path[3] not in fields:
        raise fail(f"{name} has no option '{path[3]}'", did_you_mean(str(path[3]), fields))


def _knob(key: str, path: KeyPath, value: Any, fail: _Fail) -> Knob:
    if isinstance(value, list):
        if not value:
            raise fail("needs at least one choice")
        labels = [_label(v) for v in value]
        if len(set(map(json.dumps, labels))) != len(labels):
            raise fail("choices repeat")
        return Knob(key, path, choices=tuple(value))
    if isinstance(value, dict):
        for name in value:
            if name not in Range.model_fields:
                raise fail(
                    f"unknown range key '{name}'", did_you_mean(str(name), Range.model_fields)
                )
        try:
            span = Range.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise fail(
                f"{where}: {first['msg']}", "a range is {low, high} with optional step, log"
            ) from None
        if span.low >= span.high:
            raise fail(f"low must be below high (got {span.low}, {span.high})")
        if span.log and (span.low <= 0 or span.step is not None):
            raise fail("log: true needs low > 0 and no step")
        integer = all(isinstance(value.get(k), int) for k in ("low", "high")) and (
            span.step is None or float(span.step).is_integer()
        )
        return Knob(
            key, path, low=span.low, high=span.high, step=span.step, log=span.log, integer=integer
        )
    raise fail(
        "give a list of choices or a range {low, high}", "e.g. [2, 3, 4] or {low: 0.0, high: 0.6}"
    )


def _check_value(
    knob: Knob, value: Any, data: dict[str, Any], lines: LineMap, recipe_file: Path, fail: _Fail
) -> None:
    if knob.integer:
        value = int(value)
    probe = copy.deepcopy(data)
    try:
        set_key(probe, knob.key, value, where=str(recipe_file))
        validate_recipe(probe, lines, recipe_file)
    except RecipeError as exc:
        raise fail(f"{value!r} makes an invalid recipe: {exc.message}", exc.hint) from None
