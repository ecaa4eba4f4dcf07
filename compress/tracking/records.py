"""What a run or a search is, as an experiment tracker's params, metrics and tags.

Pure functions over the run folder's JSON (no tracker imported), so every name
and value can be checked against report.json:

- params: the resolved recipe flattened to dotted keys
  (`passes.1.distill.layers`, `benchmark.batch_sizes`);
- metrics: every number a stage of report.json holds, keyed
  `<stage>.<variant>/<path>`: `quantize.int8-dynamic/accuracy`,
  `quantize.int8-dynamic/latency.b1.p50_ms`,
  `quantize.int8-dynamic/vs_original.speedup.b1`, `.../size_bytes`;
- tags: CPU, its INT8 instruction sets, compress version, task, recipe, run
  folder, and the git commit of the working folder when it is in a repository.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from compress._version import __version__
from compress.system import cpu_features, cpu_model

# MLflow's limits (mlflow.utils.validation), the same in every release since 2.0
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: its UI shows and links it
_UNSAFE = re.compile(r"[^\w.\- /:]")  # what MLflow accepts in a key
_INDEX = re.compile(r"\[(\d+)\]")
# report figures that are not a stage's metrics (ids, per-layer detail, cached predictions)
_NOT_METRICS = frozenset({"artifact_key", "quantization_error", "predictions", "round_p50_ms"})

Record = tuple[dict[str, str], dict[str, float], dict[str, str]]
"""(params, metrics, tags) of one tracked run."""


def key(text: str) -> str:
    """`text` as an MLflow key: `[1]` becomes `.1`, other characters MLflow refuses `_`,
    at most 250 characters.

    >>> key("passes[1].distill.layers")
    'passes.1.distill.layers'
    """
    return _UNSAFE.sub("_", _INDEX.sub(r".\1", text))[:MAX_KEY_LENGTH]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marked when cut."""
    mark = " …(truncated)"
    return text if len(text) <= limit else text[: limit - len(mark)] + mark


def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested recipe data as dotted keys; lists of plain values stay one value.

    >>> flatten_params({"passes": [{"prune": {"sparsity": 0.5}}], "bench": {"sizes": [1, 8]}})
    {'passes.0.prune.sparsity': '0.5', 'bench.sizes': '[1, 8]'}
    """
    out: dict[str, str] = {}
    for name, value in data.items():
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{path}."))
        elif isinstance(value, list) and any(isinstance(v, Mapping | list) for v in value):
            out.update(flatten_params(dict(enumerate(value)), f"{path}."))  # type: ignore[arg-type]
        else:
            out[key(path)] = clip(_text(value), MAX_PARAM_LENGTH)
    return out


def _numbers(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for name, value in data.items():
        if name in _NOT_METRICS:
            continue
        path = f"{prefix}{name}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            yield path, float(value)
        elif isinstance(value, Mapping):
            yield from _numbers(value, f"{path}.")


def stage_prefix(stage: Mapping[str, Any], stages: list[Mapping[str, Any]]) -> str:
    """`<stage>.<variant>`, as `compress bench compare` names a stage; the step folder
    stands for the pass where one pass runs twice (`02-quantize.int8-dynamic`)."""
    name = f"{stage.get('stage')}.{stage.get('variant')}"
    twins = [s for s in stages if f"{s.get('stage')}.{s.get('variant')}" == name]
    return f"{stage.get('step')}.{stage.get('variant')}" if len(twins) > 1 else name


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """Every number of every stage of a report, keyed `<stage>.<variant>/<path>`.

    The task's metric (`accuracy`, `macro_f1`, `perplexity`...), latency
    (`latency.b1.p50_ms` at each batch size), ratios to the original
    (`vs_original.*`), `size_bytes` and `parameters` among them.
    """
    stages: list[Mapping[str, Any]] = list(report.get("stages", []))
    metrics: dict[str, float] = {}
    for stage in stages:
        prefix = stage_prefix(stage, stages)
        for path, value in _numbers(stage):
            metrics[key(f"{prefix}/{path}")] = value
    return metrics


def git_commit(folder: Path | None = None) -> str | None:
    """HEAD of the git repository `folder` (default: the working folder) is in, if any."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def run_tags(machine: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """Where and with what a run was made: CPU and its INT8 instruction sets (as the
    report or search recorded them: `cpu`, `cpu_features`), compress version, the
    folder, and the git commit of the working folder where there is one."""
    features = machine.get("cpu_features")
    tags = {
        "compress.version": __version__,
        "compress.cpu": str(machine.get("cpu") or cpu_model()),
        "compress.isa": ",".join(cpu_features() if features is None else features) or "none",
        "compress.folder": str(folder.resolve()),
    }
    commit = git_commit()
    if commit is not None:
        tags[GIT_COMMIT_TAG] = commit
    return {k: clip(v, MAX_TAG_LENGTH) for k, v in tags.items()}


def report_tags(report: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """`run_tags` of a run, with its task and recipe file."""
    method: Mapping[str, Any] = report.get("method", {})
    tags = run_tags(method, run_dir)
    for name in ("task", "recipe"):
        if method.get(name):
            tags[f"compress.{name}"] = clip(str(method[name]), MAX_TAG_LENGTH)
    return tags


def search_record(pareto: Mapping[str, Any], search_dir: Path) -> Record:
    """(params, metrics, tags) of a search, from its pareto.json: its settings as params;
    the front, the original and the trial counts as metrics (`<label>/test_accuracy`...)."""
    settings = ("recipe", "stage", "objective", "max_drop", "batch_size", "sequence_length")
    params = {
        name: clip(_text(pareto[name]), MAX_PARAM_LENGTH) for name in settings if name in pareto
    }
    params.update(flatten_params({"space": pareto.get("space", {})}))
    metrics = {key(f"trials.{k}"): v for k, v in _numbers(pareto.get("trials", {}))}
    if isinstance(pareto.get("floor"), int | float):
        metrics["floor"] = float(pareto["floor"])
    for row in [pareto.get("original", {}), *pareto.get("rows", [])]:
        label = row.get("label")
        if label:
            numbers = _numbers({k: v for k, v in row.items() if k != "values"})
            metrics.update({key(f"{label}/{path}"): value for path, value in numbers})
    tags = run_tags(pareto.get("machine", {}), search_dir)
    for name in ("best", "verdict"):
        if pareto.get(name):
            tags[f"compress.{name}"] = clip(str(pareto[name]), MAX_TAG_LENGTH)
    return params, metrics, tags


def trial_record(trial: Mapping[str, Any]) -> Record:
    """(params, metrics, tags) of one trial of a search's trials.json."""
    values: Mapping[str, Any] = trial.get("values") or {}
    params = {key(k): clip(_text(v), MAX_PARAM_LENGTH) for k, v in values.items()}
    metrics = {
        key(name): float(value)
        for name, value in trial.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and name != "number"
    }
    tags = {
        f"compress.{name}": clip(_text(trial[name]), MAX_TAG_LENGTH)
        for name in ("state", "on_front", "feasible", "hand_written", "folder", "stopped", "error")
        if trial.get(name) is not None
    }
    tags["compress.version"] = __version__
    return params, metrics, tags
