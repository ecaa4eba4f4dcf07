"""Classify texts or images with this bundle's model, and print one label per input.

    python3 infer.py "a gripping, funny film" "two dull hours"      # text model
    python3 infer.py digit.png photo.jpg                              # image model
    python3 infer.py --runtime tensorrt "..."    # the engine build_engine.py wrote

Runs with ONNX Runtime (`pip install -r requirements.txt`) unless an engine
(model.engine) is present, then with TensorRT through `trt_exec.py` (needs
`tensorrt` and PyTorch with CUDA for the GPU buffers, both part of a JetPack
setup). Preprocessing
follows the bundle's tokenizer.json or preprocessor_config.json, as in training.

A missing package or file, an engine this GPU cannot run or a bad argument is
answered with one line on stderr that says what to do, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
REQUIREMENTS = "pip install -r requirements.txt"


class Failure(Exception):
    """A problem to report in one line on stderr (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), not with its usage."""

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message} (python3 {Path(sys.argv[0]).name} --help lists the options)")


def read_manifest(folder: Path) -> dict[str, Any]:
    """manifest.json of the bundle, or a Failure saying to unpack the whole bundle."""
    file = folder / "manifest.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Failure(f"{file}: no such file; unpack the whole bundle and run it there") from None
    except (OSError, ValueError) as exc:
        raise Failure(f"{file}: cannot read it ({exc}); unpack the bundle again") from None
    if not isinstance(data, dict):
        raise Failure(f"{file}: not a bundle manifest; unpack the bundle again")
    return data


def need(path: Path, what: str) -> Path:
    """`path`, or a Failure naming it when it is not a file."""
    if not path.is_file():
        raise Failure(f"{path}: no such file; {what}")
    return path


def text_feeds(texts: list[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """input_ids / attention_mask / token_type_ids (int64) from the bundle's tokenizer."""
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(need(HERE / "tokenizer.json", "unpack the whole bundle")))
    tokenizer.enable_truncation(max_length=int(manifest["max_length"]))
    pad = manifest.get("pad_token", "[PAD]")
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
    encoded = tokenizer.encode_batch(texts)
    columns = {
        "input_ids": [e.ids for e in encoded],
        "attention_mask": [e.attention_mask for e in encoded],
        "token_type_ids": [e.type_ids for e in encoded],
    }
    return {name: np.asarray(columns[name], dtype=np.int64) for name in manifest["model"]["inputs"]}


def image_feeds(paths: list[str], manifest: dict[str, Any]) -> dict[str, Any]:
    """pixel_values [N, C, size, size]: resized, scaled to [0, 1], normalized per channel."""
    import numpy as np
    from PIL import Image

    config_file = need(HERE / "preprocessor_config.json", "unpack the whole bundle")
    config = json.loads(config_file.read_text())
    size = config["size"]  # compress's form: an int; transformers' form: {"height", "width"}
    size = int(size["height"] if isinstance(size, dict) else size)
    mean_values = config.get("mean", config.get("image_mean"))
    channels = int(config.get("channels", len(mean_values)))
    mean = np.asarray(mean_values, dtype=np.float32)[:, None, None]
    std = np.asarray(config.get("std", config.get("image_std")), dtype=np.float32)[:, None, None]
    batch = np.empty((len(paths), channels, size, size), dtype=np.float32)
    for i, path in enumerate(paths):
        need(Path(path), "give image files that exist (a text model takes texts)")
        try:
            opened = Image.open(path)
        except OSError as exc:
            raise Failure(f"{path}: not an image Pillow reads ({exc})") from None
        with opened:
            image = opened.convert("L" if channels == 1 else "RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        batch[i] = (pixels - mean) / std
    (name,) = manifest["model"]["inputs"]
    return {name: batch}


def run_onnxruntime(feeds: dict[str, Any], manifest: dict[str, Any], cpu_only: bool) -> Any:
    import onnxruntime as ort

    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    if cpu_only:
        providers = ["CPUExecutionProvider"]
    model = need(HERE / manifest["model"]["file"], "unpack the whole bundle")
    session = ort.InferenceSession(str(model), providers=providers)
    return session.run(None, feeds)[0]


def run_tensorrt(feeds: dict[str, Any], engine_file: Path) -> Any:
    """Run the engine on the GPU with `trt_exec.py` (the runner compress benchmarks with)."""
    import importlib

    need(engine_file, "build it first: python3 build_engine.py (or ./build_engine.sh)")
    need(HERE / "trt_exec.py", "unpack the whole bundle")
    sys.path.insert(0, str(HERE))
    import trt_exec

    for name in ("tensorrt", "tensorrt_rtx"):  # JetPack / data-center TensorRT, or TensorRT-RTX
        try:
            trt = importlib.import_module(name)
            break
        except ImportError:
            continue
    else:
        raise Failure(
            "no TensorRT Python module here: install JetPack's tensorrt (or pip install "
            "tensorrt-rtx-cu13), or run on the CPU with --runtime onnxruntime"
        )
    try:
        engine = trt_exec.EngineRunner(trt, engine_file.read_bytes())
        outputs = engine(feeds)
    except trt_exec.EngineError as exc:
        raise Failure(
            f"{engine_file.name}: {exc}; rebuild it here with python3 build_engine.py, or "
            "run on the CPU with --runtime onnxruntime"
        ) from None
    return outputs["logits"] if "logits" in outputs else outputs[engine.output_names[0]]


def run(argv: list[str] | None) -> int:
    parser = Parser(description="Print a label for each text or image")
    parser.add_argument("inputs", nargs="+", help="texts (text model) or image files")
    parser.add_argument("--runtime", choices=["auto", "onnxruntime", "tensorrt"], default="auto")
    parser.add_argument("--cpu", action="store_true", help="ONNX Runtime on the CPU only")
    args = parser.parse_args(argv)
    manifest = read_manifest(HERE)
    import numpy as np

    if "pixel_values" in manifest["model"]["inputs"]:  # an image model
        feeds = image_feeds(args.inputs, manifest)
    else:
        feeds = text_feeds(args.inputs, manifest)
    engine = HERE / "model.engine"
    runtime = args.runtime
    if runtime == "auto":
        runtime = "tensorrt" if engine.is_file() and not args.cpu else "onnxruntime"
    if runtime == "tensorrt":
        logits = run_tensorrt(feeds, engine)
    else:
        logits = run_onnxruntime(feeds, manifest, args.cpu)
    logits = np.asarray(logits, dtype=np.float64)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = exp / exp.sum(axis=-1, keepdims=True)
    labels = manifest["labels"]
    for item, row in zip(args.inputs, probabilities, strict=True):
        best = int(row.argmax())
        print(f"{labels[best]}\t{row[best]:.3f}\t{item}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except Failure as exc:
        message = " ".join(str(exc).split())
    except ImportError as exc:
        message = f"{exc.name or exc} is not installed here: " + (
            "the engine's GPU buffers need PyTorch with CUDA (JetPack: NVIDIA's wheel), or run "
            "on the CPU with --runtime onnxruntime"
            if exc.name == "torch"
            else REQUIREMENTS
        )
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
