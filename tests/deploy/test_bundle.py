"""Deployment bundles from a real tiny run: skipped engine step, tarball, hashes, infer.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from compress.cli import main
from compress.data.loaders import load_dataset
from compress.errors import UserError
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv
from tests.deploy.agreement import assert_infer_agrees, device_infer, device_run, run_scores

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


def _varied(model: Path, out: Path) -> Path:
    """`model` with perturbed weights: the fresh tiny BERT gives every text the same
    probability (0.493), so only these make each text's answer its own and let the
    agreement checks below see how a text was preprocessed."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    shutil.copytree(model, out)
    net = AutoModelForSequenceClassification.from_pretrained(out)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in net.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
        net.classifier.weight.mul_(10)
    net.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("full TensorRT is installed: the tensorrt step would not be skipped")
    folder = tmp_path_factory.mktemp("bundle-run")
    write_labelled_csv(folder, 160, 7)
    recipe = folder / "tiny.yaml"
    recipe.write_text(RECIPE.format(model=_varied(tiny_model_dir, folder / "model")))
    run_recipe(load_recipe(recipe), folder / "run", progress=False)
    return folder / "run"


def test_skipped_engine_step_passes_its_input_on(
    tiny_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tensorrt step without TensorRT is skipped: its input passed on byte for byte, the
    report says why, and a re-run tries it again while reusing the other steps."""
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
    caplog.set_level(logging.INFO, logger="compress")
    again = run_recipe(recipe, tiny_run, progress=False)
    assert [r.reused for r in again] == [True, True, True, False, True]
    printed = caplog.text
    assert "tensorrt: skipped — backend 'tensorrt' is not installed; pip install " in printed
    assert "tensorrt-rtx-cu13==1.7.1.116 or use JetPack's tensorrt" in printed


def _unpack(run: Path, into: Path, name: str = "run-jetson-orin-nano") -> Path:
    """The bundle's tarball unpacked on the "device": the folder it holds."""
    with tarfile.open(run / "04-bundle" / f"{name}.tar.gz") as tar:
        tar.extractall(into, filter="data")
    return into / name


def test_bundle_unpacks_verifies_and_runs_without_compress(tiny_run: Path, tmp_path: Path) -> None:
    """The tarball holds exactly the manifest's files with their sha256, the run's Q/DQ file,
    verbatim builder copies and the engine script; infer.py runs there without compress."""
    folder = _unpack(tiny_run, tmp_path)
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
    texts = ["a great fun movie", "the plot was dull and boring"]
    assert [row[2] for row in device_infer(folder, texts)] == texts


def test_infer_py_prints_the_runs_own_labels_and_probabilities(
    tiny_run: Path, tmp_path: Path
) -> None:
    """infer.py on the device (no compress) gives each text the label and probability the
    run's own runtime computes for the bundled file; over the test split, its answers score
    what the report measured for that file on this CPU's kernels."""
    folder = _unpack(tiny_run, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    data = load_dataset(load_recipe(tiny_run.parent / "tiny.yaml").doc.data, tiny_run.parent)
    texts = [*data.test.texts, "zebra quantum harbor violin", "Loved it, GREAT fun!"]
    printed = device_infer(folder, texts)
    assert [row[2] for row in printed] == texts
    source, length = manifest["model"]["source"], manifest["max_length"]
    assert_infer_agrees(printed, *run_scores(tiny_run, source, texts, length))
    report = json.loads((tiny_run / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["variant"] == "int8-qdq")
    truth = [data.label_names[y] for y in data.test.labels]
    right = sum(row[0] == want for row, want in zip(printed, truth, strict=False))
    assert right / len(truth) == stage["cpu_kernels"]["accuracy"]


@pytest.mark.tensorrt
def test_rtx_bundle_builds_its_engine_with_the_copied_builder(
    tiny_run: Path, tmp_path: Path
) -> None:
    """An RTX bundle's build_engine.py builds an int8 engine for SM 8.9 without compress."""
    pytest.importorskip("tensorrt_rtx")
    out = tmp_path / "b"
    assert main(["bundle", str(tiny_run), "--target", "rtx-4090", "--out", str(out)]) == 0
    assert (tmp_path / "b.tar.gz").is_file()
    done = device_run(out, "build_engine.py", "--backend", "tensorrt_rtx")
    assert done.returncode == 0, done.stdout + done.stderr
    built = json.loads((out / "build.json").read_text())
    assert built["compute_capabilities"] == ["8.9"] and built["precision"] == "int8"
    assert (out / "model.engine").stat().st_size == built["engine_bytes"] > 0


def test_precision_a_target_cannot_run_is_an_error(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A precision the device cannot run, a misspelt target, or an int8 engine from an FP32
    file is refused (exit 2, nothing written); the FP32 export defaults to fp16 on a Jetson."""
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


def test_bundle_command_ships_the_model_it_is_asked_for(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compress bundle --model` ships that file of the run (fp32: the export, cpu: the ONNX
    Runtime graph, tensorrt: the Q/DQ file) with the report's figure for it, and the
    bundle's infer.py computes what the run computes with that file."""
    report = json.loads((tiny_run / "report.json").read_text())
    measured = {f"{s['step']}/{s['variant']}": s["accuracy"] for s in report["stages"]}
    wanted = {
        ("fp32", "x86-cpu"): ("01-export_onnx", "model.onnx", "fp32"),
        ("cpu", "x86-cpu"): ("01-export_onnx", "model_ort.onnx", "fp32-ort"),
        ("tensorrt", "jetson-orin-nano"): ("02-quantize", "model_int8_qdq.onnx", "int8-qdq"),
    }
    for (model, target), (step, file, variant) in wanted.items():
        out = tmp_path / model
        args = ["bundle", str(tiny_run), "--target", target, "--model", model, "--out", str(out)]
        assert main(args) == 0
        accuracy = measured[f"{step}/{variant}"]
        shown = f": {step}/{file}, expected accuracy {accuracy:.2%} -> {out}.tar.gz ("
        assert shown in capsys.readouterr().err  # logged, to stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["model"]["source"] == f"{step}/{file}"
        assert manifest["model"]["variant"] == variant
        assert (out / "model.onnx").read_bytes() == (tiny_run / step / file).read_bytes()
        assert manifest["expected"]["accuracy"] == accuracy
        gpu = target != "x86-cpu"
        assert (manifest["engine"] is not None) == gpu == (out / "build_engine.py").is_file()
    texts = ["a great fun movie", "the plot was dull and boring", "zebra"]
    printed = device_infer(tmp_path / "fp32", texts)
    assert_infer_agrees(printed, *run_scores(tiny_run, "01-export_onnx/model.onnx", texts, 32))
    with pytest.raises(SystemExit) as exited:
        main(["bundle", str(tiny_run), "--target", "x86-cpu", "--model", "int4"])
    assert exited.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err


def _readme_command(readme: str, starts: str) -> list[str]:
    """The first command line of the README's code blocks that starts with `starts`, split
    as a shell would, with this interpreter for python3."""
    (line, *_) = [line for line in readme.splitlines() if line.startswith(starts)]
    words = shlex.split(line.split("  #")[0])
    return [sys.executable if w == "python3" else w for w in words]


def test_readme_names_the_bundles_files_commands_and_figures(
    tiny_run: Path, tmp_path: Path
) -> None:
    """The bundle's README names files the bundle holds, the run's source file, the report's
    accuracy and test rows, the labels and the engine settings; its infer.py example runs
    and its check-the-files command tells an intact bundle from a changed one."""
    folder = _unpack(tiny_run, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    readme = (folder / "README.md").read_text()
    named = set(re.findall(r"`([\w./-]+\.(?:py|sh|json|onnx|txt))`", readme))
    source = "02-quantize/model_int8_qdq.onnx"
    assert (tiny_run / source).is_file() and source in named
    assert named - {source} == {
        "model.onnx",
        "manifest.json",
        "build_engine.py",
        "trt_core.py",
        "trt_exec.py",
    }
    assert all((folder / name).is_file() for name in named - {source})
    for script in re.findall(r"^(?:python3 |\./)(\S+)", readme, flags=re.MULTILINE):
        assert (folder / script).is_file(), script
    report = json.loads((tiny_run / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["variant"] == "int8-qdq")
    rows = report["method"]["data"]["test_rows"]
    assert rows == 32
    assert f"- expected accuracy: {stage['accuracy']:.2%} on {rows} test rows, Q/DQ " in readme
    assert "- labels: neg, pos\n" in readme
    assert "inputs input_ids, attention_mask, token_type_ids\n" in readme
    assert "int8, batch [1, 1, 8], sequence [1, 32, 32], workspace 1024 MB" in readme
    assert manifest["engine"] == {
        "precision": "int8",
        "batch": [1, 1, 8],
        "sequence": [1, 32, 32],
        "workspace_mb": 1024,
    }
    assert (folder / "requirements.txt").read_text().splitlines()[1:] == manifest["requirements"]
    example = _readme_command(readme, "python3 infer.py")
    assert example[0] == sys.executable
    done = device_run(folder, *example[1:])  # as the README says, on the "device"
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[2] for line in done.stdout.splitlines()] == example[2:]
    (code,) = re.findall(r"`python3 -c \"(.+)\"`", readme)
    check = [sys.executable, "-c", code]
    intact = subprocess.run(check, cwd=folder, capture_output=True, text=True, timeout=60)
    assert intact.stdout == "True\n", intact.stderr
    with (folder / "model.onnx").open("ab") as changed:
        changed.write(b"\0")
    tampered = subprocess.run(check, cwd=folder, capture_output=True, text=True, timeout=60)
    assert tampered.stdout == "False\n", tampered.stderr
