"""Recipes: YAML -> a fully validated `Recipe`, before any model is loaded.

A recipe names the task, the model, the data, an ordered list of passes (each
a one-key mapping `{pass_name: {options}}`, or just `pass_name` for defaults)
and the benchmark settings. Every problem is reported as
`file:line key: message (hint)`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from compress.artifacts import ArtifactKind, ModelInfo
from compress.errors import RecipeError, UserError, did_you_mean
from compress.recipe.overrides import apply_override
from compress.recipe.registry import all_passes, get_pass, missing_backends
from compress.recipe.schema import PassStep, Recipe, RecipeDoc
from compress.recipe.support import refusal
from compress.recipe.yaml_lines import KeyPath, LineMap, format_path, load_yaml_file
from compress.tasks import Task, get_task

Fail = Callable[..., RecipeError]
KIND_NAMES: dict[str, str] = {
    "hf": "a Hugging Face model",
    "onnx": "an ONNX model",
    "engine": "a TensorRT engine",
    "bundle": "a deployment bundle",
}
LOCAL_PREFIXES = ("/", "./", "../", "~")
FROM = "from"  # a pass entry's second key: which earlier step's model it takes
INPUT = "input"


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (`key.path=value`) and validate a recipe file."""
    file = Path(path)
    data, lines = load_yaml_file(file, "recipe")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a mapping of keys", file=file, line=1)
    for item in overrides or []:
        apply_override(data, item)
    if not data:
        raise RecipeError(
            "recipe is empty", file=file, line=1, hint="name its passes; see recipes/*.yaml"
        )
    return validate_recipe(data, lines, file)


def validate_recipe(data: dict[str, Any], lines: LineMap, file: Path) -> Recipe:
    """Validate raw recipe data (top level, sources, every pass, and the order of passes)."""

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
    task = get_task(doc.task)
    if doc.model.image_size is not None and task.input_kind != "images":
        raise fail("image_size is for image-classification recipes", ("model", "image_size"))
    doc = _with_sources(doc, data, task, file, fail)
    steps: list[PassStep] = []
    for index, entry in enumerate(doc.passes):
        steps.append(_step(index, entry, task, fail, steps))
    _check_order(steps, task, fail)
    _check_models(steps, task, doc.model.source, file.parent, fail)
    resolved = doc.model_dump(mode="json")
    resolved["name"] = doc.name or file.stem
    for section in ("model", "data"):  # so the saved recipe works from any folder
        local = file.parent / resolved[section]["source"]
        if not Path(resolved[section]["source"]).is_absolute() and local.exists():
            resolved[section]["source"] = str(local.resolve())
    resolved["passes"] = [_resolved_step(s, steps) for s in steps]
    return Recipe(doc=doc, steps=steps, file=file, resolved=copy.deepcopy(resolved), task=task)


def _with_sources(
    doc: RecipeDoc, data: dict[str, Any], task: Task, file: Path, fail: Fail
) -> RecipeDoc:
    """`doc` with the task's default model and data where the recipe names none.

    A source that is clearly a local path (absolute, `./`, `../`, `~`) must exist.
    """
    for section in ("model", "data"):
        spec = getattr(doc, section)
        if "source" not in spec.model_fields_set:
            default = task.recipe_sources[section]
            if default is None:
                where = (section, "source") if section in data else ("task",)
                hint = task.source_hints[section]
                raise fail(f"an {task.name} recipe needs {section}.source", where, hint)
            if default != spec.source:
                spec = spec.model_copy(update={"source": default})
                doc = doc.model_copy(update={section: spec})
            continue
        source = str(spec.source)
        if source.startswith(LOCAL_PREFIXES) or source in (".", ".."):
            path = Path(source).expanduser()
            if not path.exists() and not (file.parent / path).exists():
                raise fail(
                    f"'{source}' does not exist",
                    (section, "source"),
                    "a local path, read from the recipe's folder or the working folder",
                )
    return doc


def _step(index: int, entry: Any, task: Task, fail: Fail, earlier: list[PassStep]) -> PassStep:
    """One entry of `passes:` as a validated step (`earlier`: the steps before it)."""
    where: KeyPath = ("passes", index)
    options: Any
    parent = -1
    if isinstance(entry, dict) and FROM in entry and len(entry) == 2:
        entry = dict(entry)
        parent = _parent(entry.pop(FROM), earlier, (*where, FROM), fail)
    if isinstance(entry, str):
        name, options = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, options = next(iter(entry.items()))
        options = {} if options is None else options
    else:
        raise fail(
            "each pass is `name` or `name: {options}` (one key, and `from:` at the most)", where
        )
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
    refused = refusal(task, name, config)
    if refused is not None:
        key = (*where, name, *refused.option.split(".")) if refused.option else where
        raise fail(refused.message, key, refused.hint)
    for missing in missing_backends(info, config):
        raise fail(str(missing), where)
    return PassStep(index, name, config, info, parent)


def _parent(value: Any, earlier: list[PassStep], where: KeyPath, fail: Fail) -> int:
    """The results index of the step `from:` names: `input`, an earlier pass, or its folder."""
    if value == INPUT:
        return 0
    if not isinstance(value, str):
        raise fail("must name an earlier pass, its step folder or 'input'", where)
    named = [s for s in earlier if value in (s.name, s.folder)]
    if len(named) > 1:
        folders = ", ".join(s.folder for s in named)
        raise fail(
            f"'{value}' runs {len(named)} times before this pass", where, f"name one: {folders}"
        )
    if not named:
        names = [*(s.name for s in earlier), INPUT]
        hint = did_you_mean(value, names) or f"earlier: {', '.join(names)}"
        raise fail(f"no pass '{value}' runs before this one", where, hint)
    return named[0].index + 1


def _resolved_step(step: PassStep, steps: list[PassStep]) -> dict[str, Any]:
    entry: dict[str, Any] = {step.name: step.config.model_dump(mode="json")}
    if step.source != step.index:
        entry[FROM] = steps[step.source - 1].folder if step.source else INPUT
    return entry


def _check_order(steps: list[PassStep], task: Task, fail: Fail) -> None:
    """Each pass must receive the artifact kind it consumes, and what its input check wants."""
    kinds: list[ArtifactKind] = ["hf"]  # what each result is: the input model, then each pass
    makers: list[PassStep | None] = [None]  # the step that turned the model into that kind
    for step in steps:
        kind, made_by = kinds[step.source], makers[step.source]
        previous = steps[step.source - 1] if step.source else None
        if kind not in step.info.accepts:
            needs = " or ".join(KIND_NAMES[k] for k in step.info.accepts)
            if made_by is not None:
                hint = f"move it before '{made_by.name}'"
            else:
                producers = [
                    f"'{p.name}'"
                    for p in all_passes()
                    if p.produces in step.info.accepts and kind in p.accepts
                ]
                hint = f"add {' or '.join(producers)} before it"
            raise fail(
                f"'{step.name}' needs {needs} but gets {KIND_NAMES[kind]}",
                ("passes", step.index),
                hint,
            )
        if step.info.check_input is not None:
            handed = previous.info.handed_over(previous.config, task) if previous else ()
            problem = step.info.check_input(step.config, handed)
            if problem is not None:
                raise fail(problem, ("passes", step.index, step.name))
        kinds.append(step.info.produces)
        makers.append(step if step.info.produces != kind else made_by)


def _check_models(
    steps: list[PassStep], task: Task, source: str, base_dir: Path, fail: Fail
) -> None:
    """Each pass must handle the architecture and tokenizer it will get (read from JSON)."""
    infos: list[ModelInfo | None] = [task.model_info(source, base_dir)]
    for step in steps:
        info = infos[step.source]
        if step.info.check_model is not None and info is not None:
            try:
                step.info.check_model(step.config, info)
            except ValueError as exc:
                raise fail(str(exc), ("passes", step.index, step.name)) from None
        replaced = step.info.new_model(step.config) if step.info.new_model else None
        infos.append(task.model_info(replaced, base_dir) if replaced else info)


def _first_error(exc: ValidationError, prefix: KeyPath, fail: Fail) -> RecipeError:
    err = exc.errors()[0]
    path = (*prefix, *err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in err and not isinstance(err["input"], dict | list):
        message += f" (got {err['input']!r})"
    return fail(message, path)


def describe_config(config: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(option, default, description) rows for `compress passes`."""
    rows = []
    for name, field in config.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default())
        rows.append((name, default, field.description or ""))
    return rows
