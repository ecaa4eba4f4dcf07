"""Deployment bundles from a real tiny run: skipped engine step, tarball, hashes, infer.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from compress.cli import main
from compress.errors import UserError
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv

RECIPE = """\
name: tiny
model:
  source: {model}
data:
  source: data.csv
  validation_size: 32
  test_size: 32
  max_length: 32
passes:
  - export_onnx
  - quantize: {{targets: [tensorrt], calibration_samples: 16}}
  - tensorrt: {{backend: tensorrt, if_missing: skip}}
  - bundle: {{target: jetson-orin-nano}}
benchmark:
  batch_sizes: [1]
  sequence_length: 16
  warmup: 1
  repetitions: 5
  plot: false
"""
# Run code with `compress` made unimportable, as on a device without it.
NO_COMPRESS = "import runpy,sys; sys.modules['compress']=None; sys.argv=sys.argv[1:]; "


def _device_run(folder: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = NO_COMPRESS + f"runpy.run_path({script!r}, run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-I", "-c", code, script, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("full TensorRT is installed: the tensorrt step would not be skipped")
    folder = tmp_path_factory.mktemp("bundle-run")
    write_labelled_csv(folder, 160, 7)
    recipe = folder / "tiny.yaml"
    recipe.write_text(RECIPE.format(model=tiny_model_dir))
    run_recipe(load_recipe(recipe), folder / "run", progress=False)
    return folder / "run"


def test_skipped_engine_step_passes_its_input_on(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = json.loads((tiny_run / "03-tensorrt" / "manifest.json").read_text())
    assert manifest["metrics"]["skipped"] == "backend 'tensorrt' is not installed"
    assert manifest["artifact"]["kind"] == "onnx"
    assert (tiny_run / "03-tensorrt" / "model_int8_qdq.onnx").read_bytes() == (
        tiny_run / "02-quantize" / "model_int8_qdq.onnx"
    ).read_bytes()
    report = json.loads((tiny_run / "report.json").read_text())
    assert [s["step"] for s in report["stages"]] == [
        "00-input",
        "01-export_onnx",
        "01-export_onnx",
        "02-quantize",
    ]
    assert report["skipped"] == [
        {"step": "03-tensorrt", "pass": "tensorrt", "reason": "backend 'tensorrt' is not installed"}
    ]
    assert "not_run" not in report
    assert (
        "03-tensorrt: backend 'tensorrt' is not installed" in (tiny_run / "report.md").read_text()
    )
    # a re-run tries the skipped step again (it says so again) and reuses the rest
    recipe = load_recipe(tiny_run / "recipe.resolved.yaml")
    capsys.readouterr()
    again = run_recipe(recipe, tiny_run, progress=False)
    assert [r.reused for r in again] == [True, True, True, False, True]
    printed = capsys.readouterr().out
    assert "tensorrt: skipped — backend 'tensorrt' is not installed; pip install " in printed
    assert "tensorrt-rtx-cu13==1.7.1.116 or use JetPack's tensorrt" in printed


def test_bundle_unpacks_verifies_and_runs_without_compress(tiny_run: Path, tmp_path: Path) -> None:
    name = "run-jetson-orin-nano"
    tarball = tiny_run / "04-bundle" / f"{name}.tar.gz"
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / name
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(manifest["files"]) | {"manifest.json"}
    for file, digest in manifest["files"].items():
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest, file
    scripts = {"infer.py", "build_engine.py", "trt_core.py", "trt_exec.py"}
    assert {"model.onnx", "tokenizer.json", *scripts} <= on_disk
    assert (folder / "model.onnx").read_bytes() == (
        tiny_run / "02-quantize" / "model_int8_qdq.onnx"
    ).read_bytes()
    trt = Path(__file__).parents[2] / "compress" / "trt"
    copies = {"trt_core.py": trt / "builder.py", "trt_exec.py": trt / "engine_runner.py"}
    for vendored, source in copies.items():  # verbatim: the device runs compress's code
        assert (folder / vendored).read_bytes() == source.read_bytes()
    assert manifest["target"]["compute_capability"] == "8.7"
    assert manifest["engine"]["precision"] == "int8"
    assert manifest["labels"] == ["neg", "pos"]
    report = json.loads((tiny_run / "report.json").read_text())
    measured = next(s for s in report["stages"] if s["variant"] == "int8-qdq")
    assert manifest["expected"]["accuracy"] == measured["accuracy"]
    assert manifest["source_run"]["step"] == "02-quantize"
    sh = (folder / "build_engine.sh").read_text()
    assert "--int8" in sh and "--minShapes=input_ids:1x1," in sh
    assert "--maxShapes=input_ids:8x32," in sh and "--memPoolSize=workspace:1024" in sh

    texts = ["a great fun movie", "the plot was dull and boring", "loved it"]
    done = _device_run(folder, "infer.py", "--cpu", *texts)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(texts)
    for line, text in zip(lines, texts, strict=True):
        label, probability, item = line.split("\t")
        assert label in ("neg", "pos") and 0.5 <= float(probability) <= 1 and item == text


@pytest.mark.tensorrt
def test_rtx_bundle_builds_its_engine_with_the_copied_builder(
    tiny_run: Path, tmp_path: Path
) -> None:
    pytest.importorskip("tensorrt_rtx")
    out = tmp_path / "b"
    assert main(["bundle", str(tiny_run), "--target", "rtx-4090", "--out", str(out)]) == 0
    assert (tmp_path / "b.tar.gz").is_file()
    done = _device_run(out, "build_engine.py", "--backend", "tensorrt_rtx")
    assert done.returncode == 0, done.stdout + done.stderr
    built = json.loads((out / "build.json").read_text())
    assert built["compute_capabilities"] == ["8.9"] and built["precision"] == "int8"
    assert (out / "model.engine").stat().st_size == built["engine_bytes"] > 0


def test_precision_a_target_cannot_run_is_an_error(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "cpu")
    assert (
        main(["bundle", str(tiny_run), "--target", "x86-cpu", "--precision", "fp16", "--out", out])
        == 2
    )
    err = capsys.readouterr().err
    assert "target x86-cpu" in err and "does not run fp16" in err
    assert not Path(out).exists()
    assert main(["bundle", str(tiny_run), "--target", "jetson-orin-nan", "--out", out]) == 2
    assert "did you mean 'jetson-orin-nano'" in capsys.readouterr().err
    # the FP32 export on a Jetson builds an FP16 engine by default
    from compress.passes.bundle import BundleConfig, package

    made = package(tiny_run, BundleConfig(target="jetson-xavier-nx", model="fp32"), tmp_path / "x")
    assert made.manifest["engine"]["precision"] == "fp16"
    assert made.manifest["model"]["source"] == "01-export_onnx/model.onnx"
    assert "--fp16" in (tmp_path / "x" / "build_engine.sh").read_text()
    with pytest.raises(UserError, match="int8 engine is built from the TensorRT Q/DQ file"):
        package(
            tiny_run,
            BundleConfig(target="rtx-3060", model="fp32", precision="int8"),
            tmp_path / "y",
        )
