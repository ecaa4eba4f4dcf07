"""The `tracking:` section of a recipe: where a run's figures are logged besides its folder.

    tracking:
      mlflow:
        uri: http://mlflow.example:5000   # or sqlite:///mlflow.db; default $MLFLOW_TRACKING_URI
        experiment: distil-int8           # default: the recipe's name

`compress run RECIPE --mlflow URI` sets (or replaces) `tracking.mlflow.uri`.
The section is not part of the resolved recipe: where a run is logged changes
none of its results, and a tracking URI may hold credentials.
"""

from __future__ import annotations

import importlib.util
import json

from pydantic import Field, field_validator, model_validator

from compress.options import StrictOptions

MLFLOW_EXTRA = "pip install 'edge-compress[mlflow]'"


class MlflowSettings(StrictOptions):
    """`tracking.mlflow`: one MLflow run per compress run (one per trial for a search)."""

    uri: str | None = Field(
        None,
        description="tracking URI: a server (http://host:5000), a local store "
        "(sqlite:///mlflow.db) or databricks; default: $MLFLOW_TRACKING_URI",
    )
    experiment: str | None = Field(None, description="experiment name; default: the recipe's name")

    @field_validator("uri", "experiment")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave the key out for the default)")
        return value

    @model_validator(mode="after")
    def _installed(self) -> MlflowSettings:
        # checked with the recipe, so a long run does not end without its log
        if importlib.util.find_spec("mlflow") is None:
            raise ValueError(f"MLflow is not installed ({MLFLOW_EXTRA})")
        return self


class TrackingSettings(StrictOptions):
    """The `tracking:` section of a recipe."""

    mlflow: MlflowSettings | None = Field(None, description="log to an MLflow tracking server")


def mlflow_uri_override(uri: str | None) -> list[str]:
    """`--mlflow URI` as the recipe override it stands for (none without a URI)."""
    # a JSON string is a YAML scalar that reads back as exactly `uri`
    return [] if uri is None else [f"tracking.mlflow.uri={json.dumps(uri)}"]
