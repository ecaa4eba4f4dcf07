"""Recipes: YAML -> a fully validated `Recipe`, before any model is loaded.

A recipe names the model, the data, an ordered list of passes (each a
one-key mapping `{pass_name: {options}}`, or just `pass_name` for defaults)
and the benchmark settings. Every problem is reported as
`file:line key: message (hint)`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from compress.benchmark.settings import BenchmarkSettings
from compress.data.spec import DataSpec
from compress.errors import RecipeError, UserError, did_you_mean
from compress.models import ModelSpec
from compress.passes.base import PassConfig, PassInfo
from compress.registry import get_pass, missing_backends
from compress.yaml_lines import KeyPath, LineMap, format_path, load_yaml

TASKS = ("text-classification", "image-classification")
TEXT_DEFAULTS = {"model": "minilm-l6", "data": "rotten-tomatoes"}
IMAGE_HINTS = {
    "model": "mnist-cnn, efficientnet-lite0, or an image model folder",
    "data": "mnist, photos, an image folder (one sub-folder per class) or a .npz file",
}


class RecipeDoc(BaseModel):
    """The top level of a recipe file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="run name; default: the file name")
    task: Literal["text-classification", "image-classification"] = Field(
        "text-classification", description="the task"
    )
    seed: int = Field(0, description="seed for training, sampling and calibration")
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    passes: list[Any] = Field(default_factory=list, description="ordered passes")
    benchmark: BenchmarkSettings = BenchmarkSettings()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        # the default run folder is runs/<name>: a path here would write elsewhere
        if value is not None and (
            not value.strip() or value in (".", "..") or any(c in value for c in "/\\\0")
        ):
            raise ValueError("must be a plain name (no '/', '\\', '..'), it names runs/<name>")
        return value

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value: int) -> int:
        if not 0 <= value < 2**32:  # what NumPy and torch accept as a seed
            raise ValueError(f"must be between 0 and {2**32 - 1}")
        return value


@dataclass(frozen=True)
class PassStep:
    """One validated pass of a recipe."""

    index: int
    name: str
    config: PassConfig
    info: PassInfo

    @property
    def folder(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: the document, its passes, and where it came from."""

    doc: RecipeDoc
    steps: list[PassStep]
    file: Path
    resolved: dict[str, Any]

    @property
    def name(self) -> str:
        return self.doc.name or self.file.stem


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`key.path=value`) and validate a recipe file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{file}: recipe not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read recipe ({exc})") from None
    data, lines = load_yaml(text, str(file))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a mapping of keys", file=file, line=1)
    for item in overrides or []:
        apply_override(data, item)
    return validate_recipe(data, lines, file)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply `a.b[0].c=value` (value parsed as YAML) to the raw recipe data."""
    if "=" not in item:
        raise RecipeError(f"'{item}' is not key=value", file="--set")
    key, _, raw_value = item.partition("=")
    value, _ = load_yaml(raw_value, "--set") if raw_value.strip() else (None, None)
    parts: list[str | int] = []
    for token in key.replace("[", ".").replace("]", "").split("."):
        if token:
            parts.append(int(token) if token.isdigit() else token)
    if not parts:
        raise RecipeError(f"'{item}' has an empty key", file="--set")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        nxt = parts[depth + 1]
        child: Any = None
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            child = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            child = node.setdefault(part, [] if isinstance(nxt, int) else {})
        if isinstance(child, str) and child == nxt:
            child = {child: {}}  # a pass written bare (`- distill`) now given options
            node[part] = child
        elif isinstance(child, dict) and isinstance(nxt, str) and child.get(nxt, 0) is None:
            child[nxt] = {}  # `- distill:` with no options
        if not isinstance(child, dict | list):
            where = format_path(tuple(parts[: depth + 1]))
            raise RecipeError(f"'{where}' does not exist in the recipe", file="--set")
        node = child
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise RecipeError(f"cannot set '{key}'", file="--set")


def validate_recipe(data: dict[str, Any], lines: LineMap, file: Path) -> Recipe:
    """Validate raw recipe data (top level, every pass, and the order of passes)."""

    def fail(message: str, path: KeyPath, hint: str | None = None) -> RecipeError:
        return RecipeError(
            message, file=file, line=lines.line_of(path), key=format_path(path) or None, hint=hint
        )

    for key in data:
        if key not in RecipeDoc.model_fields:
            raise fail("unknown key", (key,), did_you_mean(key, RecipeDoc.model_fields))
    try:
        doc = RecipeDoc.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, (), fail) from None
    if doc.task == "image-classification":
        for section, text_default in TEXT_DEFAULTS.items():
            if getattr(doc, section).source == text_default:
                raise fail(
                    f"'{text_default}' is a text {section}; an image-classification recipe "
                    f"needs {section}.source",
                    (section, "source") if section in data else ("task",),
                    IMAGE_HINTS[section],
                )

    steps: list[PassStep] = []
    for index, entry in enumerate(doc.passes):
        where: KeyPath = ("passes", index)
        options: Any
        if isinstance(entry, str):
            name, options = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, options = next(iter(entry.items()))
            options = {} if options is None else options
        else:
            raise fail("each pass is `name` or `name: {options}` (one key)", where)
        try:
            info = get_pass(name)
        except UserError as exc:
            raise fail(str(exc), where) from None
        if not isinstance(options, dict):
            raise fail(f"options of '{name}' must be a mapping", (*where, name))
        for key in options:
            if key not in info.config.model_fields:
                hint = did_you_mean(key, info.config.model_fields)
                known = "options: " + ", ".join(info.config.model_fields)
                raise fail(f"unknown option of '{name}'", (*where, name, key), hint or known)
        try:
            config = info.config.model_validate(options)
        except ValidationError as exc:
            raise _first_error(exc, (*where, name), fail) from None
        if doc.task not in info.tasks:
            raise fail(
                f"'{name}' does not serve {doc.task} models",
                where,
                f"it serves {', '.join(info.tasks)}",
            )
        if info.check is not None:
            try:
                info.check(config, doc.task)
            except ValueError as exc:
                raise fail(str(exc), (*where, name)) from None
        for missing in missing_backends(info, config):
            raise fail(str(missing), where)
        steps.append(PassStep(index, name, config, info))

    _check_order(steps, fail)
    resolved = doc.model_dump(mode="json")
    resolved["name"] = doc.name or file.stem
    for section in ("model", "data"):  # so the saved recipe works from any folder
        local = file.parent / resolved[section]["source"]
        if not Path(resolved[section]["source"]).is_absolute() and local.exists():
            resolved[section]["source"] = str(local.resolve())
    resolved["passes"] = [{s.name: s.config.model_dump(mode="json")} for s in steps]
    return Recipe(doc=doc, steps=steps, file=file, resolved=copy.deepcopy(resolved))


def _check_order(steps: list[PassStep], fail: Any) -> None:
    """Each pass must receive the artifact kind it consumes, and what its input check wants."""
    kind = "hf"
    names = {
        "hf": "a Hugging Face model",
        "onnx": "an ONNX model",
        "engine": "a TensorRT engine",
        "bundle": "a deployment bundle",
    }
    producers = {"onnx": "export_onnx"}
    previous: PassStep | None = None
    for step in steps:
        if kind not in step.info.accepts:
            wanted = step.info.accepts[0]
            producer = producers.get(wanted)
            hint = f"add '{producer}' before it" if producer else "move it before 'export_onnx'"
            if kind in ("engine", "bundle"):
                hint = f"move it before '{previous.name if previous else kind}'"
            needs = " or ".join(names[k] for k in step.info.accepts)
            raise fail(
                f"'{step.name}' needs {needs} but gets {names[kind]}",
                ("passes", step.index),
                hint,
            )
        if step.info.check_input is not None:
            problem = step.info.check_input(
                step.config, previous.name if previous else None, previous and previous.config
            )
            if problem is not None:
                raise fail(problem, ("passes", step.index, step.name))
        kind = step.info.produces
        previous = step


def _first_error(exc: ValidationError, prefix: KeyPath, fail: Any) -> RecipeError:
    err = exc.errors()[0]
    path = (*prefix, *err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in err and not isinstance(err["input"], dict | list):
        message += f" (got {err['input']!r})"
    error: RecipeError = fail(message, path)
    return error


def describe_config(config: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(option, default, description) rows for `compress passes`."""
    rows = []
    for name, field in config.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default())
        rows.append((name, default, field.description or ""))
    return rows
