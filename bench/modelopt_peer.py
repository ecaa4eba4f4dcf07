"""NVIDIA ModelOpt's ONNX INT8 post-training quantization of the flagship's FP32 student,
scored like the flagship's TensorRT file.

ModelOpt (`nvidia-modelopt[onnx]`) pulls onnxruntime-gpu and its own onnx, so
it lives in its own environment; this script runs in both:

    python bench/modelopt_peer.py prepare                      # compress's venv
    /path/to/modelopt-venv/bin/python bench/modelopt_peer.py quantize
    python bench/modelopt_peer.py score                        # compress's venv

A ModelOpt environment: `python -m venv mo && mo/bin/pip install torch==2.13.0
'nvidia-modelopt[onnx]' transformers`. `prepare` writes the calibration feeds
(the first 256 training texts, 64 tokens, the same texts compress's `qat`
calibrates on) next to the flagship run's FP32 student export; `quantize`
calls what a TensorRT user would run, `modelopt.onnx.quantization.quantize(
onnx_path, quantize_mode="int8", calibration_data=..., calibration_method=...,
high_precision_dtype=...)`, once per setting; `score` evaluates every file on
the test split with the Q/DQ graph executed exactly (what TensorRT computes,
as the flagship's TensorRT file is scored), beside this CPU's INT8 kernels.
Results: bench/results/modelopt_peer.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SETTINGS = {
    "max-fp32": {"calibration_method": "max", "high_precision_dtype": "fp32"},
    "entropy-fp32": {"calibration_method": "entropy", "high_precision_dtype": "fp32"},
    "default": {},  # max calibration, fp16 high precision (ModelOpt's defaults)
}
SAMPLES = 256
LENGTH = 64


def export_step(run: Path) -> Path:
    """The flagship run's export_onnx step folder (`05-export_onnx`, ...)."""
    found = sorted(run.glob("*-export_onnx"))
    if not found:
        raise SystemExit(f"no export_onnx step in {run}: run python bench/flagship.py first")
    return found[-1]


def prepare(run: Path, folder: Path) -> None:
    import numpy as np
    from transformers import AutoTokenizer

    from compress.artifacts import copy_preprocessing
    from compress.data.loaders import load_dataset
    from compress.recipe import load_recipe
    from compress.tasks import get_task

    recipe = load_recipe(ROOT / "recipes" / "distil_int8.yaml")
    data = load_dataset(recipe.doc.data, ROOT / "recipes")
    source = export_step(run)
    tokenizer = AutoTokenizer.from_pretrained(source)
    batch = get_task("text-classification").fixed_batch(
        tokenizer, data.train.texts[:SAMPLES], SAMPLES, LENGTH
    )
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "calibration.npz", **{k: np.asarray(v) for k, v in batch.items()})
    copy_preprocessing(source, folder)
    (folder / "source.txt").write_text(str(source / "model.onnx"))
    print(f"calibration feeds: {folder / 'calibration.npz'}")


def quantize(folder: Path) -> None:
    import numpy as np
    import onnx
    from modelopt.onnx.quantization import quantize as modelopt_quantize

    source = Path((folder / "source.txt").read_text())
    names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]
    feeds = dict(np.load(folder / "calibration.npz"))
    calibration = {n: feeds[n].astype(np.int64) for n in names}
    for name, options in SETTINGS.items():
        out = folder / f"model_int8_modelopt_{name}.onnx"
        modelopt_quantize(
            str(source),
            quantize_mode="int8",
            calibration_data=calibration,
            calibration_eps=["cpu"],
            output_path=str(out),
            **options,
        )
        print(f"{name}: {out}")
    import modelopt

    (folder / "modelopt.json").write_text(json.dumps({"modelopt": modelopt.__version__}))


def score(run: Path, folder: Path) -> dict[str, Any]:
    from compress.artifacts import Artifact, Variant
    from compress.benchmark.report import method_info
    from compress.benchmark.settings import BenchmarkSettings
    from compress.benchmark.stage import benchmark_variant
    from compress.data.loaders import load_dataset
    from compress.recipe import load_recipe
    from compress.tasks import get_task

    recipe = load_recipe(ROOT / "recipes" / "distil_int8.yaml")
    data = load_dataset(recipe.doc.data, ROOT / "recipes")
    settings = BenchmarkSettings()
    task = get_task("text-classification")
    flagship = json.loads((run / "report.json").read_text())
    original = flagship["stages"][0]
    ours = next(s for s in flagship["stages"] if s.get("target") == "tensorrt")
    fp32 = next(s for s in flagship["stages"] if s.get("variant") == "fp32-ort")
    rows = []
    for name in SETTINGS:
        file = f"model_int8_modelopt_{name}.onnx"
        variant = Variant(f"modelopt-{name}", "onnxruntime", "int8", "tensorrt", file)
        artifact = Artifact("onnx", folder, "modelopt", [variant])
        scored = benchmark_variant(
            artifact, variant, data.test, settings, LENGTH, True, task=task, measure=False
        )
        rows.append(
            {
                "setting": name,
                "options": SETTINGS[name],
                "accuracy": scored["accuracy"],
                "accuracy_method": scored.get("accuracy_method"),
                "cpu_kernels_accuracy": scored.get("cpu_kernels", {}).get("accuracy"),
                "size_bytes": scored["size_bytes"],
            }
        )
    version = json.loads((folder / "modelopt.json").read_text())["modelopt"]
    result = {
        "modelopt": version,
        "original_accuracy": original["accuracy"],
        "fp32_student_accuracy": fp32["accuracy"],
        "compress_tensorrt_file": {
            "variant": ours["variant"],
            "accuracy": ours["accuracy"],
            "cpu_kernels_accuracy": ours.get("cpu_kernels", {}).get("accuracy"),
            "size_bytes": ours["size_bytes"],
        },
        "modelopt_files": rows,
        "method": method_info(settings, LENGTH),
    }
    (RESULTS / "modelopt_peer.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "modelopt_peer.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return result


def to_markdown(result: dict[str, Any]) -> str:
    ours = result["compress_tensorrt_file"]
    m = result["method"]

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value:.2%}"

    lines = [
        "# TensorRT-form INT8 files: compress's QAT against ModelOpt's ONNX PTQ",
        "",
        f"The flagship's student (3 layers; heads, FFN and vocabulary pruned; FP32 ONNX "
        f"{pct(result['fp32_student_accuracy'])}; the original "
        f"{pct(result['original_accuracy'])}). Accuracy on the 2000-row Rotten Tomatoes "
        "test split, each Q/DQ graph executed exactly (ONNX Runtime, graph optimizations "
        "off: the integer math TensorRT runs); this CPU's fused INT8 kernels beside it.",
        "",
        "| file | accuracy (exact) | this CPU's kernels | size MB |",
        "|---|---:|---:|---:|",
        f"| compress `qat` ({ours['variant']}) | {pct(ours['accuracy'])} | "
        f"{pct(ours['cpu_kernels_accuracy'])} | {ours['size_bytes'] / 1e6:.1f} |",
    ]
    for row in result["modelopt_files"]:
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "defaults"
        lines.append(
            f"| ModelOpt {result['modelopt']} int8 ({options}) | {pct(row['accuracy'])} | "
            f"{pct(row['cpu_kernels_accuracy'])} | {row['size_bytes'] / 1e6:.1f} |"
        )
    features = ", ".join(m.get("cpu_features") or [])
    lines += ["", f"Measured on {m['cpu']} ({features}), {m['date']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "quantize", "score"])
    parser.add_argument("--flagship", type=Path, default=RESULTS / "flagship-run")
    args = parser.parse_args()
    folder = args.flagship / "peer-modelopt"
    if args.step == "prepare":
        prepare(args.flagship, folder)
    elif args.step == "quantize":
        quantize(folder)
    else:
        score(args.flagship, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
