"""QAT vs static PTQ for the TensorRT INT8 form, on the real MiniLM and Rotten Tomatoes.

    python bench/qat_vs_ptq.py                 # run both recipes, then score
    python bench/qat_vs_ptq.py --skip-run      # only re-score existing runs

A short recipe fine-tunes MiniLM-L6 (1 epoch on `TRAIN_SAMPLES` training rows,
to fit ~15 minutes on 2 cores), distils it into a 3-layer student, exports it
to ONNX and quantizes it with static PTQ in TensorRT's form (symmetric S8S8
Q/DQ, per-channel weights, MatMul/Gemm only, min-max calibration on 256 rows).
A second recipe runs `qat` on the same student (1 epoch, distilling from the
FP32 student). The FP32 ONNX, the PTQ Q/DQ and the QAT Q/DQ files are then
scored with ONNX Runtime on the same held-out test split (never used for
training, calibration or model selection). The figure of merit is the share
of the PTQ accuracy loss that QAT recovers: (QAT - PTQ) / (FP32 - PTQ).
Results: bench/results/qat_vs_ptq.json and qat_vs_ptq.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TRAIN_SAMPLES = 2000
DATA = {
    "source": "rotten-tomatoes",
    "max_length": 64,
    "validation_size": 500,
    "test_size": 2000,
    "train_samples": TRAIN_SAMPLES,
}
PTQ_RECIPE: dict[str, Any] = {
    "name": "qat_vs_ptq-ptq",
    "seed": 0,
    "model": {"source": "minilm-l6"},
    "data": DATA,
    "passes": [
        {"fine_tune": {"epochs": 1, "lr": 5.0e-5, "batch_size": 32}},
        {"distill": {"layers": 3, "epochs": 1, "lr": 1.0e-4, "temperature": 2.0, "alpha": 0.5}},
        {"export_onnx": {"optimize": False}},
        {"quantize": {"targets": ["tensorrt"], "calibration_samples": 256, "method": "minmax"}},
    ],
}
QAT_OPTIONS = {"epochs": 1, "lr": 2.0e-5, "batch_size": 32, "calibration_samples": 256}
TARGET_RECOVERED = 0.5


def _recipe(data: dict[str, Any], folder: Path) -> Path:
    import yaml

    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(recipe: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "compress", "run", str(recipe), "--out", str(out), "--no-report"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - started


def score(files: dict[str, Path], tokenizer_dir: Path) -> dict[str, float]:
    """Test accuracy of each ONNX file with ONNX Runtime, same split, same batches."""
    import numpy as np

    from compress.data.batches import sorted_batches
    from compress.data.loaders import load_dataset
    from compress.data.spec import DataSpec
    from compress.quant.parity import feeds_for, session
    from compress.tasks import get_task

    task = get_task("text-classification")
    data = load_dataset(DataSpec(**DATA), ROOT)
    tokenizer = task.load_processor(tokenizer_dir)
    encoded = task.encode(tokenizer, data.test.inputs, DATA["max_length"])
    lengths = task.lengths(encoded)
    out = {}
    for name, file in files.items():
        sess = session(file, threads=2)
        preds = np.zeros(len(encoded), dtype=np.int64)
        for idx in sorted_batches(lengths, 64):
            batch = task.collate(tokenizer, encoded, idx)
            preds[idx] = sess.run(None, feeds_for(sess, batch))[0].argmax(-1)
        out[name] = float((preds == data.test.labels).mean())
        print(f"{name}: test accuracy {out[name]:.4f} ({len(preds)} snippets)", flush=True)
    return out


def summarize(acc: dict[str, float], seconds: dict[str, float | None]) -> dict[str, Any]:
    ptq_loss = acc["fp32"] - acc["ptq"]
    recovered = (acc["qat"] - acc["ptq"]) / ptq_loss if ptq_loss > 0 else None
    return {
        "test_accuracy": acc,
        "ptq_loss_points": 100 * ptq_loss,
        "qat_loss_points": 100 * (acc["fp32"] - acc["qat"]),
        "recovered_share": recovered,
        "targets": {
            "recovered >= 50%": recovered is not None and recovered >= TARGET_RECOVERED,
            "qat >= ptq": acc["qat"] >= acc["ptq"],
        },
        "seconds": seconds,
        "method": {
            "model": "minilm-l6 fine-tuned 1 epoch, distilled to 3 layers (1 epoch)",
            "data": {**DATA, "note": f"training limited to {TRAIN_SAMPLES} rows for time"},
            "ptq": PTQ_RECIPE["passes"][-1]["quantize"],
            "qat": QAT_OPTIONS,
            "runtime": "onnxruntime CPUExecutionProvider, 2 threads, batches of 64 by length",
        },
    }


def to_markdown(result: dict[str, Any]) -> str:
    acc = result["test_accuracy"]
    share = result["recovered_share"]
    lines = [
        "# QAT vs static PTQ (TensorRT INT8 Q/DQ form)",
        "",
        "3-layer MiniLM student on Rotten Tomatoes; same 2,000 test snippets for every row.",
        f"Training limited to {TRAIN_SAMPLES} rows (see bench/qat_vs_ptq.py).",
        "",
        "| model | test accuracy | loss vs FP32 (points) |",
        "|---|---:|---:|",
        f"| FP32 ONNX | {acc['fp32']:.4f} | - |",
        f"| static PTQ, symmetric Q/DQ | {acc['ptq']:.4f} | {result['ptq_loss_points']:.2f} |",
        f"| QAT (NNCF), symmetric Q/DQ | {acc['qat']:.4f} | {result['qat_loss_points']:.2f} |",
        "",
        "Share of the PTQ loss recovered by QAT: "
        + (f"{100 * share:.0f}%" if share is not None else "n/a (PTQ lost nothing)")
        + f" (target >= {100 * TARGET_RECOVERED:.0f}%, and QAT never below PTQ).",
    ]
    lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in result["targets"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "qat_vs_ptq")
    parser.add_argument("--skip-run", action="store_true", help="score existing runs only")
    args = parser.parse_args()
    ptq_out, qat_out = args.out / "ptq", args.out / "qat"
    seconds: dict[str, float | None] = {"ptq_recipe": None, "qat_recipe": None}
    if not args.skip_run:
        with tempfile.TemporaryDirectory() as tmp:
            seconds["ptq_recipe"] = run(_recipe(PTQ_RECIPE, Path(tmp)), ptq_out)
            qat_recipe = {
                "name": "qat_vs_ptq-qat",
                "seed": 0,
                "model": {"source": str(ptq_out / "02-distill")},
                "data": DATA,
                "passes": [{"qat": QAT_OPTIONS}],
            }
            seconds["qat_recipe"] = run(_recipe(qat_recipe, Path(tmp)), qat_out)
    files = {
        "fp32": ptq_out / "03-export_onnx" / "model.onnx",
        "ptq": ptq_out / "04-quantize" / "model_int8_qdq.onnx",
        "qat": qat_out / "01-qat" / "model_int8_qdq.onnx",
    }
    result = summarize(score(files, ptq_out / "03-export_onnx"), seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qat_vs_ptq.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "qat_vs_ptq.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
