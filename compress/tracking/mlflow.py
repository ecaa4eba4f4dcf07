"""Log a compress run, or a search and its trials, to MLflow.

    log_run(Path("runs/distil_int8"), MlflowSettings(uri="http://mlflow:5000"),
            name="distil_int8", params=recipe.resolved)
    log_search(Path("runs/search-distil_int8"), settings, name="distil_int8")

One MLflow run per compress run: the resolved recipe as params, every stage's
figures from report.json as metrics, the machine and version as tags, and the
report files as artifacts (see `compress.tracking.records` for the names). A
search is one parent run (its settings, the measured front) with one child run
per trial of trials.json.

MLflow (`pip install 'edge-compress[mlflow]'`) is imported only here, only when
something is logged, through `MlflowClient`: a program that uses MLflow itself
keeps its own active run. Logging comes after the run folder is complete, so
a tracking server that cannot be reached, or refuses, costs one warning line
and nothing else. MLflow's HTTP client would retry for minutes first; unless
the environment says otherwise, it retries twice here and waits at most
`HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_TIMEOUT"]` seconds for an answer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from compress.artifacts import read_json
from compress.tracking.records import (
    Record,
    clip,
    flatten_params,
    report_metrics,
    report_tags,
    run_tags,
    search_record,
    trial_record,
)
from compress.tracking.settings import MlflowSettings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
"""MLflow's HTTP settings unless the environment sets them (MLflow: 7 retries, 120 s)."""
# MLflow's own chatter while logging: store migrations (INFO), urllib3's retries (WARNING)
_QUIET = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "urllib3": logging.ERROR}
RUN_FILES = ("recipe.resolved.yaml", "reproduce.json")  # logged beside the report files
SEARCH_FILES = ("trials.json", "pareto.json", "pareto.png", "best.yaml", "report.md", "report.html")
# the socket's own words inside requests' "Max retries exceeded ... Caused by ..." message
_SOCKET_ERROR = re.compile(r"(\[Errno -?\d+\][^'\")]*|Read timed out|Connection aborted)")
PARENT_RUN_TAG = "mlflow.parentRunId"  # what makes a run a child in MLflow's UI
BATCH = 100  # params (and tags) MLflow takes in one call; metrics: 1000


@contextlib.contextmanager
def _mlflow_settings() -> Iterator[None]:
    """MLflow's HTTP defaults (`HTTP_DEFAULTS`) and quieter loggers, restored after."""
    import mlflow  # noqa: F401  (first: importing it sets its loggers' levels)

    added = [name for name in HTTP_DEFAULTS if name not in os.environ]
    levels = {name: logging.getLogger(name).level for name in _QUIET}
    os.environ.update({name: HTTP_DEFAULTS[name] for name in added})
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(max(level, logging.getLogger(name).level))
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def shown_uri(uri: str | None) -> str:
    """The tracking URI to print: without a password, or where MLflow's default comes from."""
    if uri is None:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        return shown_uri(env) if env else "MLflow's default store"
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _reason(exc: BaseException) -> str:
    """What went wrong, short: the socket's error for a server that cannot be reached."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    cause = _SOCKET_ERROR.search(text)
    if cause is not None:
        return f"cannot connect: {cause.group(1).strip()}"
    return clip(text, 240)


def _warn(settings: MlflowSettings, exc: BaseException, folder: Path) -> None:
    reason = _reason(exc)
    log.warning(
        "MLflow: could not log to %s (%s); the results are in %s",
        shown_uri(settings.uri),
        reason,
        folder,
    )


def _json(path: Path) -> Any:
    data = read_json(path)
    if not isinstance(data, dict | list):
        raise ValueError(f"{path} is missing or not JSON")
    return data


def _client(settings: MlflowSettings) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.uri)


def _experiment_id(client: MlflowClient, name: str) -> str:
    """The id of the experiment `name`, created when missing."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException:  # another run created it meanwhile
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage != "active":
        raise ValueError(f"experiment '{name}' is deleted: restore it or name another")
    return str(found.experiment_id)


def _log_batches(
    client: MlflowClient,
    run_id: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    param_list = [Param(k, v) for k, v in params.items()]
    tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
    metric_list = [Metric(k, v, now, 0) for k, v in metrics.items() if math.isfinite(v)]
    for start in range(0, len(param_list), BATCH):
        client.log_batch(run_id, params=param_list[start : start + BATCH])
    for start in range(0, len(tag_list), BATCH):
        client.log_batch(run_id, tags=tag_list[start : start + BATCH])
    for start in range(0, len(metric_list), 10 * BATCH):
        client.log_batch(run_id, metrics=metric_list[start : start + 10 * BATCH])


def _run(
    client: MlflowClient,
    experiment_id: str,
    name: str,
    record: Record,
    files: list[Path],
    status: str = "FINISHED",
) -> str:
    """One MLflow run: params, metrics and tags of `record`, then `files` as artifacts."""
    params, metrics, tags = record
    run = client.create_run(experiment_id, run_name=name, tags=dict(tags))
    run_id: str = run.info.run_id
    try:
        _log_batches(client, run_id, params, metrics)
        for path in files:
            client.log_artifact(run_id, str(path))
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, status)
    return run_id


def _existing(folder: Path, names: tuple[str, ...]) -> list[Path]:
    return [folder / name for name in names if (folder / name).is_file()]


def _announce(settings: MlflowSettings, experiment: str, ids: tuple[str, str], what: str) -> None:
    where = shown_uri(settings.uri)
    if where.startswith(("http://", "https://")):
        where = f"{where.rstrip('/')}/#/experiments/{ids[0]}/runs/{ids[1]}"
    log.info(f"mlflow: {what} logged to experiment '{experiment}', run {ids[1]} ({where})")


def log_run(
    run_dir: Path, settings: MlflowSettings, *, name: str, params: Mapping[str, Any]
) -> str | None:
    """Log the finished run in `run_dir` (its report.json, report files, recipe) as one
    MLflow run named `name` in `settings.experiment` (default: `name`), with `params` (the
    resolved recipe) flattened. Returns the MLflow run id, or None after a warning."""
    run_dir = Path(run_dir)
    try:
        report = _json(run_dir / "report.json")
        files = [p for p in sorted(run_dir.glob("report*")) if p.is_file()]
        files += _existing(run_dir, RUN_FILES)
        record = (flatten_params(params), report_metrics(report), report_tags(report, run_dir))
        with _mlflow_settings():
            client = _client(settings)
            experiment = settings.experiment or name
            experiment_id = _experiment_id(client, experiment)
            run_id = _run(client, experiment_id, name, record, files)
    except Exception as exc:  # the run folder holds every result: logging only warns
        _warn(settings, exc, run_dir)
        return None
    _announce(settings, experiment, (experiment_id, run_id), str(run_dir))
    return run_id


def log_search(search_dir: Path, settings: MlflowSettings, *, name: str) -> str | None:
    """Log a finished search (pareto.json, trials.json and its report) as one MLflow run,
    with one child run per trial. Returns the parent's run id, or None after a warning."""
    search_dir = Path(search_dir)
    try:
        pareto = _json(search_dir / "pareto.json")
        trials: list[dict[str, Any]] = _json(search_dir / "trials.json")
        record = search_record(pareto, search_dir)
        files = _existing(search_dir, SEARCH_FILES)
        with _mlflow_settings():
            client = _client(settings)
            experiment = settings.experiment or name
            experiment_id = _experiment_id(client, experiment)
            parent = _run(client, experiment_id, f"search {name}", record, files)
            common = run_tags({}, search_dir)
            for trial in trials:
                params, metrics, tags = trial_record(trial)
                tags = {**common, **tags, PARENT_RUN_TAG: parent}
                status = "FAILED" if trial.get("state") == "fail" else "FINISHED"
                label = f"trial {trial.get('number')}"
                _run(client, experiment_id, label, (params, metrics, tags), [], status)
    except Exception as exc:  # the search folder holds every result: logging only warns
        _warn(settings, exc, search_dir)
        return None
    _announce(settings, experiment, (experiment_id, parent), f"{search_dir} ({len(trials)} trials)")
    return parent
