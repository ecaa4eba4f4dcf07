"""Experiment tracking: a run's figures logged where a team keeps its history (MLflow).

The recipe's `tracking:` section (`compress.tracking.settings`) says where;
the runner calls `track_run` once the report is written, a search calls
`track_search` once its outputs are. Neither imports MLflow unless the recipe
asks for it, and neither raises when the tracker cannot be reached: the run
folder already holds every result (see `compress.tracking.mlflow`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compress.tracking.settings import MlflowSettings, TrackingSettings, mlflow_uri_override

__all__ = [
    "MlflowSettings",
    "TrackingSettings",
    "mlflow_uri_override",
    "track_run",
    "track_search",
]


def track_run(
    tracking: TrackingSettings | None, run_dir: Path, name: str, params: Mapping[str, Any]
) -> str | None:
    """Log the run in `run_dir` where `tracking` says; its MLflow run id, or None."""
    if tracking is None or tracking.mlflow is None:
        return None
    from compress.tracking.mlflow import log_run

    return log_run(run_dir, tracking.mlflow, name=name, params=params)


def track_search(tracking: TrackingSettings | None, search_dir: Path, name: str) -> str | None:
    """Log the search in `search_dir` (its trials as child runs) where `tracking` says."""
    if tracking is None or tracking.mlflow is None:
        return None
    from compress.tracking.mlflow import log_search

    return log_search(search_dir, tracking.mlflow, name=name)
