"""Every script a bundle carries answers a user's mistake with one line and exit code 2.

Each script runs as a subprocess in a clean environment, as on a device: `python -I`
(no PYTHONPATH, no user site), a minimal PATH, the bundle folder as cwd; `python -I -S`
(no site-packages at all: only the standard library) stands for a device where the
backend is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compress.artifacts import Artifact
from compress.deploy.bundle import SCRIPTS, vendored_files
from compress.deploy.devices import get_device
from compress.deploy.readme import trtexec_script

CLEAN_PATH = "/usr/bin:/bin"


def _manifest(target: str) -> dict[str, object]:
    """A bundle manifest with what the scripts read (as `make_bundle` writes it)."""
    shapes = {name: ["batch", "sequence"] for name in ("input_ids", "attention_mask")}
    return {
        "task": "text-classification",
        "target": get_device(target).to_json(),
        "model": {"file": "model.onnx", "inputs": list(shapes), "input_shapes": shapes},
        "labels": ["neg", "pos"],
        "max_length": 32,
        "pad_token": "[PAD]",
        "engine": {"precision": "int8", "batch": [1, 1, 8], "sequence": [1, 32, 32]}
        | {"workspace_mb": 1024},
        "context_length": 64,
        "eos_token_ids": [0],
    }


@pytest.fixture(scope="module")
def bundle(tiny_onnx: Artifact, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Jetson Orin bundle's files: the tiny ONNX model, tokenizer, manifest and scripts."""
    folder = tmp_path_factory.mktemp("bundle") / "jetson-orin-nano"
    folder.mkdir()
    shutil.copyfile(tiny_onnx.path / "model.onnx", folder / "model.onnx")
    for name in ("tokenizer.json", "config.json"):
        shutil.copyfile(tiny_onnx.path / name, folder / name)
    manifest = _manifest("jetson-orin-nano")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for script in ("infer.py", "build_engine.py", "generate.py", "embed.py"):
        shutil.copyfile(SCRIPTS / script, folder / script)
    for name, module in vendored_files().items():
        shutil.copyfile(module, folder / name)
    (folder / "build_engine.sh").write_text(trtexec_script(manifest))
    (folder / "build_engine.sh").chmod(0o755)
    return folder


@pytest.fixture()
def copy(bundle: Path, tmp_path: Path) -> Path:
    """A copy of the bundle a test may break."""
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


def run(
    folder: Path, command: list[str], bare: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    """`command` (a script and its arguments) run in `folder` in a clean environment; a
    .py script by this interpreter with -I (and -S when `bare`: the standard library only)."""
    if command[0].endswith(".py"):
        command = [sys.executable, "-I", *(["-S"] if bare else []), *command]
    return subprocess.run(
        command,
        cwd=folder,
        env={"PATH": CLEAN_PATH, "HOME": str(folder), "LC_ALL": "C.UTF-8", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str], *says: str, code: int = 2) -> None:
    """Exit `code`, nothing on stdout and one `error: ...` line on stderr holding `says`."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "", done.stdout
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for text in says:
        assert text in done.stderr, (text, done.stderr)


def test_build_engine_without_a_backend(bundle: Path) -> None:
    """Neither TensorRT nor TensorRT-RTX importable: say what to install."""
    one_line(
        run(bundle, ["build_engine.py"], bare=True),
        "no tensorrt Python module here",
        "JetPack ships them",
    )
    rtx = ["--backend", "tensorrt_rtx", "--compute-capability", "8.6"]
    one_line(
        run(bundle, ["build_engine.py", *rtx], bare=True),
        "no tensorrt_rtx Python module here: pip install tensorrt-rtx-cu13",
    )


def test_build_engine_refuses_a_capability_tensorrt_rtx_cannot_build(bundle: Path) -> None:
    """Jetson Orin is SM 8.7, which TensorRT-RTX has no target for: pass 8.6 or use full
    TensorRT (asked before the backend is imported, so this holds on any machine)."""
    rtx = ["--backend", "tensorrt_rtx"]
    for args in (rtx, [*rtx, "--compute-capability", "8.7"]):
        one_line(
            run(bundle, ["build_engine.py", *args], bare=True),
            "TensorRT-RTX cannot build for compute capability 8.7",
            "pass --compute-capability 8.6",
            "full TensorRT",
        )
    xavier = run(bundle, ["build_engine.py", *rtx, "--compute-capability", "7.2"], bare=True)
    one_line(xavier, "compute capability 7.2", "build with full TensorRT")
    assert "pass --compute-capability" not in xavier.stderr  # no SM 7.x target at or below 7.2


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt_rtx") is None
    or importlib.util.find_spec("tensorrt") is not None,
    reason="needs TensorRT-RTX installed and full TensorRT absent",
)
def test_build_engine_where_only_tensorrt_rtx_is_installed(bundle: Path) -> None:
    """The Jetson bundle where only TensorRT-RTX is installed picks it, and then says what to
    do instead of `KeyError: '8.7'`."""
    done = run(bundle, ["build_engine.py"])
    one_line(done, "compute capability 8.7", "--compute-capability 8.6")
    assert "KeyError" not in done.stderr and not (bundle / "model.engine").exists()


def test_build_engine_missing_files_and_bad_arguments(bundle: Path, copy: Path) -> None:
    one_line(
        run(bundle, ["build_engine.py", "--onnx", "missing.onnx"]),
        "missing.onnx: no such ONNX file; pass --onnx FILE",
    )
    cases = {  # argparse's refusals, each in one line that points at --help
        ("--batch", "8,1,1"): "want MIN,OPT,MAX with MIN <= OPT <= MAX (got 8,1,1)",
        ("--batch", "a,b,c"): "want MIN,OPT,MAX",
        ("--precision", "fp64"): "invalid choice: 'fp64'",
        ("--workspace-mb", "0"): "--workspace-mb must be at least 1 (got 0)",
        ("--no-such-flag",): "unrecognized arguments: --no-such-flag",
    }
    for args, message in cases.items():
        one_line(run(bundle, ["build_engine.py", *args]), message, "build_engine.py --help")
    (copy / "trt_core.py").unlink()
    one_line(run(copy, ["build_engine.py"]), "trt_core.py: no such file; unpack the whole")
    (copy / "manifest.json").unlink()
    one_line(run(copy, ["build_engine.py"]), "manifest.json: no such file; unpack the whole")


def test_infer_without_its_packages_and_with_missing_files(bundle: Path, copy: Path) -> None:
    one_line(
        run(bundle, ["infer.py", "a fine film"], bare=True),
        "numpy is not installed here: pip install -r requirements.txt",
    )
    one_line(
        run(bundle, ["infer.py", "--runtime", "tensorrt", "a fine film"]),
        "model.engine: no such file; build it first: python3 build_engine.py",
    )
    (copy / "model.onnx").unlink()
    one_line(run(copy, ["infer.py", "a fine film"]), "model.onnx: no such file")
    (copy / "tokenizer.json").unlink()
    one_line(run(copy, ["infer.py", "a fine film"]), "tokenizer.json: no such file")
    (copy / "manifest.json").unlink()
    one_line(run(copy, ["infer.py", "a fine film"]), "manifest.json: no such file")


def test_infer_an_image_that_is_not_there(copy: Path) -> None:
    """An image model's bundle given a path that is not a file, or a file that is no image."""
    pytest.importorskip("PIL")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model"]["inputs"] = ["pixel_values"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    config = {"size": 8, "mean": [0.5], "std": [0.5]}
    (copy / "preprocessor_config.json").write_text(json.dumps(config))
    one_line(run(copy, ["infer.py", "missing.png"]), "missing.png: no such file; give image")
    one_line(run(copy, ["infer.py", "manifest.json"]), "manifest.json: not an image Pillow reads")


def test_infer_bad_arguments_and_an_engine_it_cannot_run(bundle: Path, copy: Path) -> None:
    one_line(run(bundle, ["infer.py"]), "the following arguments are required: inputs")
    one_line(run(bundle, ["infer.py", "--runtime", "gpu", "x"]), "invalid choice: 'gpu'")
    (copy / "model.engine").write_bytes(b"not an engine")
    done = run(copy, ["infer.py", "--runtime", "tensorrt", "a fine film"])
    trt = any(importlib.util.find_spec(n) for n in ("tensorrt", "tensorrt_rtx"))
    one_line(done, "model.engine: " if trt else "no TensorRT Python module here")
    assert "--runtime onnxruntime" in done.stderr


def test_generate_one_line_answers(bundle: Path, copy: Path) -> None:
    one_line(
        run(bundle, ["generate.py", "hello"], bare=True),
        "onnxruntime is not installed here: pip install onnxruntime tokenizers numpy",
    )
    cases = {
        ("hello", "--max-new-tokens", "0"): "--max-new-tokens must be at least 1 (got 0)",
        ("hello", "--temperature", "hot"): "invalid float value: 'hot'",
        ("hello", "--threads", "-1"): "--threads must be at least 0 (got -1)",
        (): "the following arguments are required: prompt",
    }
    for args, message in cases.items():
        one_line(run(bundle, ["generate.py", *args]), message)
    (copy / "tokenizer.json").unlink()
    one_line(run(copy, ["generate.py", "hello"]), "tokenizer.json: no such file")
    (copy / "manifest.json").unlink()
    one_line(run(copy, ["generate.py", "hello"]), "manifest.json: no such file")


def test_embed_one_line_answers(bundle: Path) -> None:
    one_line(
        run(bundle, ["embed.py", "--text", "hello"], bare=True),
        "tokenizers is not installed here: pip install onnxruntime tokenizers numpy",
    )
    cases = {
        (): "one of the arguments --text --file is required",
        ("--text", "a", "--batch-size", "0"): "--batch-size must be at least 1 (got 0)",
        ("--text", "a", "--threads", "-2"): "--threads must be at least 0 (got -2)",
        ("--file", "missing.txt"): "missing.txt: no such file",
    }
    for args, message in cases.items():
        one_line(run(bundle, ["embed.py", *args]), message)


def test_build_engine_sh_one_line_answers(bundle: Path, copy: Path) -> None:
    """No trtexec, a stray argument, a missing ONNX file: exit 2 with one line; a failed
    trtexec: its exit status and one line after its own messages."""
    script = ["./build_engine.sh"]
    one_line(
        run(bundle, script, TRTEXEC="/nowhere/trtexec"),
        "no trtexec at /nowhere/trtexec",
        "set TRTEXEC=/path/to/trtexec, or run python3 build_engine.py",
    )
    if shutil.which("trtexec", path=CLEAN_PATH) is None:
        one_line(run(bundle, script), "no trtexec at ", "install TensorRT")
    one_line(run(bundle, [*script, "fp16"]), "unexpected argument 'fp16'", "--flags")
    failed = run(bundle, script, TRTEXEC="/bin/false")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("error: trtexec failed (exit 1)")
    (copy / "model.onnx").unlink()
    one_line(run(copy, script), "model.onnx: no such file; unpack the whole bundle")


@pytest.mark.tensorrt
def test_build_engine_for_jetson_with_the_capability_it_suggests(
    copy: Path, tiny_qdq: Artifact
) -> None:
    """What the refusal says works: the Jetson bundle's int8 Q/DQ file builds with
    TensorRT-RTX for SM 8.6."""
    pytest.importorskip("tensorrt_rtx")
    qdq = next(v for v in tiny_qdq.variants if v.target == "tensorrt")
    shutil.copyfile(tiny_qdq.file(qdq), copy / "model.onnx")
    done = run(
        copy, ["build_engine.py", "--backend", "tensorrt_rtx", "--compute-capability", "8.6"]
    )
    assert done.returncode == 0, done.stderr
    built = json.loads((copy / "build.json").read_text())
    assert built["compute_capabilities"] == ["8.6"] and built["precision"] == "int8"
    assert (copy / "model.engine").stat().st_size == built["engine_bytes"] > 0
