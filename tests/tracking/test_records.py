"""The `tracking:` recipe section and what a report becomes as MLflow params, metrics, tags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compress.errors import RecipeError
from compress.recipe import load_recipe
from compress.tracking import TrackingSettings, mlflow_uri_override
from compress.tracking.records import (
    MAX_KEY_LENGTH,
    MAX_PARAM_LENGTH,
    flatten_params,
    key,
    report_metrics,
    trial_record,
)

ROOT = Path(__file__).parents[2]
FLAGSHIP = ROOT / "recipes" / "distil_int8.yaml"


def _with_tracking(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(FLAGSHIP.read_text() + "\n" + section)
    return path


def test_tracking_section_is_validated_with_the_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(
        _with_tracking(tmp_path, "tracking:\n  mlflow:\n    uri: sqlite:///m.db\n")
    )
    assert recipe.doc.tracking == TrackingSettings.model_validate(
        {"mlflow": {"uri": "sqlite:///m.db"}}
    )
    assert "tracking" not in recipe.resolved  # logging elsewhere changes no result
    plain = load_recipe(FLAGSHIP)
    assert plain.doc.tracking is None and plain.resolved == recipe.resolved


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ("tracking:\n  mlflow:\n    url: http://x\n", ":\\d+ tracking.mlflow.url: unknown key"),
        ("tracking:\n  mlflw: {}\n", ":\\d+ tracking.mlflw: unknown key"),
        ("tracking:\n  mlflow:\n    experiment: ' '\n", "tracking.mlflow.experiment: must not"),
    ],
)
def test_a_bad_tracking_section_names_its_line_and_key(
    tmp_path: Path, section: str, where: str
) -> None:
    with pytest.raises(RecipeError, match=where):
        load_recipe(_with_tracking(tmp_path, section))


def test_a_recipe_that_logs_to_mlflow_needs_it_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused with the recipe, before any model loads, rather than after a long run."""
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as where it is not installed
    hint = r"tracking.mlflow: MLflow is not installed \(pip install 'edge-compress\[mlflow\]'\)"
    with pytest.raises(RecipeError, match=hint):
        load_recipe(FLAGSHIP, ["tracking.mlflow={}"])
    assert load_recipe(FLAGSHIP).doc.tracking is None  # recipes without it do not ask


def test_the_mlflow_option_is_the_uri_override() -> None:
    """`--mlflow URI` sets tracking.mlflow.uri to exactly URI, whatever YAML would make of it."""
    odd = "http://user:p#ss@host:5000/x?y=1: z"
    recipe = load_recipe(FLAGSHIP, mlflow_uri_override(odd))
    assert recipe.doc.tracking is not None and recipe.doc.tracking.mlflow is not None
    assert recipe.doc.tracking.mlflow.uri == odd
    assert mlflow_uri_override(None) == []


def test_keys_are_what_mlflow_accepts() -> None:
    assert key("passes[1].distill.layers") == "passes.1.distill.layers"
    assert key("a(b)=c") == "a_b__c"
    assert len(key("x" * 400)) == MAX_KEY_LENGTH


def test_recipe_params_are_flat_dotted_and_within_mlflow_limits() -> None:
    resolved = {
        "name": "r",
        "passes": [{"prune": {"ffn": 0.5, "targets": ["a", "b"]}}, "export_onnx"],
        "benchmark": {"batch_sizes": [1, 8], "eval_samples": None, "plot": True},
        "data": {"prompt": "p" * (MAX_PARAM_LENGTH + 10)},
    }
    params = flatten_params(resolved)
    assert params["passes.0.prune.ffn"] == "0.5"
    assert params["passes.0.prune.targets"] == '["a", "b"]'
    assert params["passes.1"] == "export_onnx"
    assert params["benchmark.batch_sizes"] == "[1, 8]"
    assert params["benchmark.eval_samples"] == "null" and params["benchmark.plot"] == "true"
    assert len(params["data.prompt"]) == MAX_PARAM_LENGTH
    assert params["data.prompt"].endswith("(truncated)")


def test_every_number_of_every_stage_is_a_metric() -> None:
    stage = {
        "stage": "quantize",
        "variant": "int8",
        "step": "02-quantize",
        "accuracy": 0.9,
        "size_bytes": 1000,
        "latency": {"b1": {"p50_ms": 1.5, "round_p50_ms": [1.4, 1.6]}},
        "vs_original": {"speedup": {"b1": 2.0}, "size_ratio": 4.0},
        "quantization_error": {"layer": 0.1},  # per-layer detail, not a metric
        "artifact_key": "abc",
        "bad": True,
    }
    twin = {**stage, "step": "04-quantize", "accuracy": 0.8}
    single = report_metrics({"stages": [stage]})
    assert single == {
        "quantize.int8/accuracy": 0.9,
        "quantize.int8/size_bytes": 1000.0,
        "quantize.int8/latency.b1.p50_ms": 1.5,
        "quantize.int8/vs_original.speedup.b1": 2.0,
        "quantize.int8/vs_original.size_ratio": 4.0,
    }
    both = report_metrics({"stages": [stage, twin]})  # one pass run twice: the step names it
    assert both["02-quantize.int8/accuracy"] == 0.9 and both["04-quantize.int8/accuracy"] == 0.8


def test_a_trial_is_its_values_scores_and_state() -> None:
    trial = {
        "number": 3,
        "state": "pruned",
        "values": {"passes[1].prune.ffn": 0.5},
        "hand_written": False,
        "val_accuracy": 0.8,
        "p50_ms": None,
        "size_bytes": 1234,
        "on_front": False,
        "folder": "trials/abc",
        "stopped": "below the floor",
    }
    params, metrics, tags = trial_record(trial)
    assert params == {"passes.1.prune.ffn": "0.5"}
    assert metrics == {"val_accuracy": 0.8, "size_bytes": 1234.0}
    assert tags["compress.state"] == "pruned" and tags["compress.stopped"] == "below the floor"
    assert tags["compress.on_front"] == "false" and tags["compress.folder"] == "trials/abc"


def test_tracking_imports_no_mlflow_until_it_logs() -> None:
    code = (
        "import sys; from compress.recipe import load_recipe; import compress.tracking.mlflow;"
        f"load_recipe({str(FLAGSHIP)!r}, ['tracking.mlflow.uri=sqlite:///x.db']);"
        "print([m for m in sys.modules if m.split('.')[0] == 'mlflow'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
