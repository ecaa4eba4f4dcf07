"""A real `mlflow server` on 127.0.0.1 (one per session), and a tiny recipe run once."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_labelled_csv

RECIPE = """\
name: tiny-tracked
model:
  source: {model}
data:
  source: data.csv
  validation_size: 32
  test_size: 32
  max_length: 32
passes:
  - export_onnx
  - quantize: {{calibration_samples: 16, targets: [cpu]}}
benchmark:
  batch_sizes: [1, 2]
  sequence_length: 16
  warmup: 1
  repetitions: 5
  plot: false
"""
SERVER_START_S = 300  # a fresh server migrates its database first: slow on a 2-core machine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (once the socket is closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`http://127.0.0.1:PORT` of an `mlflow server` (sqlite store, its own artifact folder)
    started for this session in a temporary folder, and stopped after it."""
    pytest.importorskip("mlflow.server", reason="the server needs the full mlflow package")
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with (folder / "server.log").open("wb") as log:
        server = subprocess.Popen(
            command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # its workers share its process group: stopped together
        )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if server.poll() is not None or time.monotonic() > deadline:
                log_text = (folder / "server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start (exit {server.poll()}):\n{log_text}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # its job runners, should they linger
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def tracked_recipe(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A tiny recipe (export + INT8), run once here so that each test's run reuses its steps
    and timings and only logs."""
    from compress.recipe import load_recipe
    from compress.run.runner import run_recipe

    folder = tmp_path_factory.mktemp("tracked")
    write_labelled_csv(folder, 160, 7)
    path = folder / "tiny.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    run_recipe(load_recipe(path), folder / "run", progress=False)
    return path
