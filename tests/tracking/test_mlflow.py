"""`compress run --mlflow` against real MLflow stores: a local sqlite store, a real
`mlflow server`, and a server that cannot be reached. Every run is read back through
MLflow's own client and compared with the run folder's report.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from compress._version import __version__
from compress.cli import main
from tests.tracking.conftest import free_port

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


def _git_repo(folder: Path) -> str:
    """Make `folder` a git repository with one commit; its commit id."""
    git = [
        "git",
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "init.defaultBranch=main",
    ]
    subprocess.run([*git, "init", "-q", str(folder)], check=True)
    subprocess.run(
        [*git, "-C", str(folder), "commit", "-q", "--allow-empty", "-m", "x"], check=True
    )
    done = subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _at(data: Any, dotted: str) -> Any:
    """The value at a dotted path (`passes.1.quantize.targets`) of nested recipe data."""
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _only_run(client: Any, experiment: str) -> Any:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return runs[0]


def _assert_matches_run_folder(client: Any, run: Any, run_dir: Path, tmp_path: Path) -> None:
    """The MLflow run holds the run folder's recipe, report figures, machine and files."""
    report = json.loads((run_dir / "report.json").read_text())
    resolved = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-tracked"

    params = run.data.params
    assert params["name"] == "tiny-tracked"
    assert params["passes.1.quantize.calibration_samples"] == "16"
    assert params["benchmark.batch_sizes"] == "[1, 2]"
    assert params["passes.1.quantize.targets"] == '["cpu"]'
    for name, value in params.items():  # every param is the resolved recipe's value there
        expected = _at(resolved, name)
        assert value == (expected if isinstance(expected, str) else json.dumps(expected)), name
    assert "tracking.mlflow.uri" not in params  # where it is logged is not part of the recipe

    metrics = run.data.metrics
    labels = [f"{s['stage']}.{s['variant']}" for s in report["stages"]]
    assert labels == [
        "input.fp32",
        "export_onnx.fp32",
        "export_onnx.fp32-ort",
        "quantize.int8-dynamic",
    ]
    for label, stage in zip(labels, report["stages"], strict=True):
        assert metrics[f"{label}/accuracy"] == pytest.approx(stage["accuracy"])
        assert metrics[f"{label}/size_bytes"] == stage["size_bytes"]
        assert metrics[f"{label}/vs_original.size_ratio"] == pytest.approx(
            stage["vs_original"]["size_ratio"]
        )
        assert metrics[f"{label}/vs_original.accuracy_delta_points"] == pytest.approx(
            stage["vs_original"]["accuracy_delta_points"]
        )
        assert set(stage["latency"]) == {"b1", "b2"}
        for batch, figures in stage["latency"].items():
            assert metrics[f"{label}/latency.{batch}.p50_ms"] == pytest.approx(figures["p50_ms"])
            assert metrics[f"{label}/vs_original.speedup.{batch}"] == pytest.approx(
                stage["vs_original"]["speedup"][batch]
            )
    int8 = metrics["quantize.int8-dynamic/vs_original.size_ratio"]
    assert int8 > 1.5  # the INT8 file is smaller: the figures are the stage's, not the original's

    tags = run.data.tags
    method = report["method"]
    assert tags["compress.cpu"] == method["cpu"]
    assert tags["compress.isa"] == (",".join(method["cpu_features"]) or "none")
    assert tags["compress.version"] == __version__ == method["versions"]["compress"]
    assert tags["compress.task"] == method["task"]
    assert tags["compress.folder"] == str(run_dir.resolve())

    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.json", "report.md", "report.html", "recipe.resolved.yaml"} <= files
    copy = client.download_artifacts(run.info.run_id, "report.json", str(tmp_path))
    assert json.loads(Path(copy).read_text()) == report


def test_run_logs_to_a_local_sqlite_store(
    tracked_recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`compress run --mlflow sqlite:///...` from a git checkout: one run, tagged with HEAD."""
    work = tmp_path / "checkout"
    work.mkdir()
    commit = _git_repo(work)
    monkeypatch.chdir(work)  # MLflow puts a sqlite store's artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tracked_recipe.parent / "run"
    assert (
        main(["run", str(tracked_recipe), "--out", str(run_dir), "--quiet", "--mlflow", uri]) == 0
    )

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = _only_run(client, "tiny-tracked")  # the experiment defaults to the recipe's name
    _assert_matches_run_folder(client, run, run_dir, tmp_path / "downloaded")
    assert run.data.tags["mlflow.source.git.commit"] == commit


def test_run_logs_to_a_real_mlflow_server(
    tracked_recipe: Path,
    mlflow_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The recipe's `tracking:` names the experiment and a dead URI; `--mlflow` replaces the URI."""
    monkeypatch.chdir(tmp_path)  # not in a git repository: no commit tag
    recipe = tmp_path / "tracked.yaml"
    dead = f"http://127.0.0.1:{free_port()}"
    tracking = {"tracking": {"mlflow": {"uri": dead, "experiment": "nightly"}}}
    recipe.write_text(tracked_recipe.read_text() + yaml.safe_dump(tracking))
    (tmp_path / "data.csv").symlink_to(tracked_recipe.parent / "data.csv")
    run_dir = tracked_recipe.parent / "run"
    args = ["run", str(recipe), "--out", str(run_dir), "--mlflow", mlflow_server]
    assert main(args) == 0

    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "nightly")
    _assert_matches_run_folder(client, run, run_dir, tmp_path / "downloaded")
    assert "mlflow.source.git.commit" not in run.data.tags
    out = capsys.readouterr().err  # logged, to stderr
    assert f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in out


def test_an_unreachable_server_is_one_warning_line(tracked_recipe: Path, tmp_path: Path) -> None:
    """As a user sees it (a process of its own): exit 0, the report written, one line."""
    run_dir = tracked_recipe.parent / "run"  # its steps and timings are reused
    for name in ("report.json", "report.html"):
        (run_dir / name).unlink()  # written again by this run, or lost
    uri = f"http://127.0.0.1:{free_port()}"  # closed: nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "compress", "run", str(tracked_recipe), "--out", str(run_dir),
         "--quiet", "--mlflow", uri],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_dir / "report.json").is_file() and (run_dir / "report.html").is_file()
    noise = ("mlflow", "urllib3", "retrying", "traceback")
    lines = [line for line in done.stderr.splitlines() if any(n in line.lower() for n in noise)]
    assert len(lines) == 1, done.stderr[-3000:]
    # (the line's prefix is the logging handler's: none, or one a library installed)
    assert f"MLflow: could not log to {uri} (cannot connect:" in lines[0]
    assert str(run_dir) in lines[0]
    assert "mlflow:" not in done.stdout + done.stderr  # nothing claims it was logged
    assert not list(tmp_path.glob("mlruns*"))
