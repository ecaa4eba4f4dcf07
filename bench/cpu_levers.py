"""What makes the flagship's CPU INT8 file fast, measured lever by lever.

    python bench/cpu_levers.py                       # every lever
    python bench/cpu_levers.py --only 2l-ffn50 ...   # some of them
    python bench/cpu_levers.py --skip-run            # only re-time existing runs

Each lever is a recipe that starts from the flagship's fine-tuned model (the
teacher; `bench/flagship.py` writes it, `--flagship RUN` names another run)
and differs from a plain 3-layer student in one or two knobs: student depth, FFN and head
pruning with distilled recovery, distillation length and hidden-state
matching, and ONNX Runtime's INT8 paths (dynamic or static, per-channel,
`reduce_range`). Accuracy comes from each run's report (test split). Latency:
the teacher (PyTorch FP32, the original) and every lever's CPU INT8 file are
opened at once and timed interleaved in one process, so every ratio is
measured under the same machine conditions; each ratio is the median over the
rounds of the schedule, with the rounds' min and max. Results:
bench/results/cpu_levers-<cpu kind>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

from flagship import cpu_kind  # noqa: E402

DISTILL = {"epochs": 1, "temperature": 2.0, "alpha": 0.5, "lr": 1.0e-4}
VOCAB = {"prune_vocab": {"corpus": "train"}}
EXPORT = {"export_onnx": {"atol": 1.0e-4}}
DYNAMIC = {"quantize": {"targets": ["cpu"]}}
RECOVERY = {"epochs": 1, "lr": 5.0e-5}


def _student(layers: int, **extra: Any) -> dict[str, Any]:
    return {"distill": {**DISTILL, "layers": layers, **extra}}


def _prune(**knobs: Any) -> dict[str, Any]:
    return {"prune": {**knobs, "recovery": RECOVERY}}


def _int8(**knobs: Any) -> dict[str, Any]:
    return {"quantize": {"targets": ["cpu"], **knobs}}


LEVERS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    # name: (what it changes, its passes after the flagship's fine-tuned model)
    "3l": ("3 layers, dynamic INT8 (the flagship before pruning)", [_student(3)]),
    "int8-reduce-range": (
        "3 layers, dynamic INT8 with 7-bit weights (reduce_range)",
        [_student(3), VOCAB, EXPORT, _int8(reduce_range=True)],
    ),
    "int8-per-tensor": (
        "3 layers, dynamic INT8 with per-tensor weight scales",
        [_student(3), VOCAB, EXPORT, _int8(per_channel=False)],
    ),
    "int8-static": (
        "3 layers, static (calibrated) Q/DQ INT8",
        [_student(3), VOCAB, EXPORT, _int8(cpu_mode="static")],
    ),
    "3l-2ep": ("3 layers, 2 distillation epochs", [_student(3, epochs=2)]),
    "3l-ffn50": ("3 layers, half the FFN pruned", [_student(3), _prune(ffn=0.5)]),
    "3l-heads50": ("3 layers, half the heads pruned", [_student(3), _prune(heads=0.5)]),
    "3l-heads50-ffn50": (
        "3 layers, half the heads and half the FFN pruned",
        [_student(3), _prune(heads=0.5, ffn=0.5)],
    ),
    "3l-heads50-ffn75": (
        "3 layers, half the heads and 3/4 of the FFN pruned",
        [_student(3), _prune(heads=0.5, ffn=0.75)],
    ),
    "3l-heads67-ffn75": (
        "3 layers, 2/3 of the heads and 3/4 of the FFN pruned",
        [_student(3), _prune(heads=0.67, ffn=0.75)],
    ),
    "3l-2ep-heads50-ffn75": (
        "3 layers, 2 distillation epochs, half the heads and 3/4 of the FFN pruned",
        [_student(3, epochs=2), _prune(heads=0.5, ffn=0.75)],
    ),
    "2l": ("2 layers", [_student(2)]),
    "2l-2ep": ("2 layers, 2 distillation epochs", [_student(2, epochs=2)]),
    "2l-hidden": ("2 layers, hidden states matched", [_student(2, hidden_weight=1.0)]),
    "2l-ffn50": ("2 layers, half the FFN pruned", [_student(2), _prune(ffn=0.5)]),
}


def passes_of(lever: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lever's passes, completed with the flagship's tail where it stops early."""
    names = [next(iter(p)) for p in lever]
    if "quantize" in names:
        return lever
    return [*lever, VOCAB, EXPORT, DYNAMIC]


def write_recipe(name: str, source: Path, passes: list[dict[str, Any]], folder: Path) -> Path:
    flagship = yaml.safe_load((ROOT / "recipes" / "distil_int8.yaml").read_text())
    recipe = {
        "name": f"lever-{name}",
        "task": flagship["task"],
        "seed": flagship["seed"],
        "model": {"source": str(source)},
        "data": flagship["data"],
        "passes": passes,
        # accuracy of the final file only; latency is timed below, all files together
        "benchmark": {**flagship["benchmark"], "stages": "final", "batch_sizes": [1]},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_lever(recipe: Path, out: Path) -> None:
    cmd = [sys.executable, "-m", "compress", "run", str(recipe), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)


def cpu_file(run: Path) -> Path:
    step = next(p for p in sorted(run.iterdir(), reverse=True) if p.name.endswith("-quantize"))
    return step / "model_int8_cpu.onnx"


def time_all(teacher: Path, files: dict[str, Path], rounds: int) -> dict[str, Any]:
    """Teacher and every lever's CPU file, timed interleaved at batch 1: per lever the
    median over rounds of the per-round speedup, with the rounds' min and max."""
    from compress.artifacts import Artifact, Variant
    from compress.benchmark.measure import round_ratios
    from compress.benchmark.settings import BenchmarkSettings
    from compress.benchmark.stage import interleaved_latency
    from compress.data.loaders import load_dataset
    from compress.recipe import load_recipe
    from compress.tasks import get_task

    recipe = load_recipe(ROOT / "recipes" / "distil_int8.yaml")
    data = load_dataset(recipe.doc.data, ROOT / "recipes")
    settings = BenchmarkSettings(
        batch_sizes=[1], sequence_length=64, threads=2, warmup=10, repetitions=20 * rounds
    )
    stages = {
        "original": (
            Artifact("hf", teacher, "original", []),
            Variant("fp32", "torch", "fp32", "portable"),
        )
    }
    for name, file in files.items():
        variant = Variant(name, "onnxruntime", "int8", "cpu", file.name)
        stages[name] = (Artifact("onnx", file.parent, name, [variant]), variant)
    timed = interleaved_latency(stages, data.test.texts, settings, get_task("text-classification"))
    reference = timed["original"]["b1"]["round_p50_ms"]
    out = {"original_b1_p50_ms": timed["original"]["b1"]["p50_ms"], "levers": {}}
    for name in files:
        ratios = round_ratios(reference, timed[name]["b1"]["round_p50_ms"])
        out["levers"][name] = {
            "b1_p50_ms": timed[name]["b1"]["p50_ms"],
            "speedup_b1": float(np.median(ratios)),
            "speedup_b1_min": min(ratios),
            "speedup_b1_max": max(ratios),
            "rounds": len(ratios),
        }
    return out


def lever_row(
    name: str, run: Path, original: dict[str, Any], timed: dict[str, Any]
) -> dict[str, Any]:
    report = json.loads((run / "report.json").read_text())
    final = report["stages"][-1]
    return {
        "lever": name,
        "what": LEVERS[name][0],
        "accuracy": final["accuracy"],
        "accuracy_delta_points": 100 * (final["accuracy"] - original["accuracy"]),
        "size_ratio": original["size_bytes"] / final["size_bytes"],
        "parameters": final.get("parameters"),
        **timed["levers"][name],
    }


def to_markdown(result: dict[str, Any]) -> str:
    m = result["method"]
    lines = [
        "# CPU INT8 levers (bench/cpu_levers.py)",
        "",
        f"Original: the flagship's fine-tuned MiniLM-L6 (PyTorch FP32), accuracy "
        f"{result['original']['accuracy']:.2%}, b1 p50 {result['original_b1_p50_ms']:.2f} ms. "
        "Every file below is dynamic INT8 for ONNX Runtime unless named otherwise; accuracy "
        "on the 2000-row Rotten Tomatoes test split; ×faster is the median over "
        f"{result['rounds']} interleaved rounds of the per-round b1 ratio (min–max).",
        "",
        "| lever | accuracy | Δ pt | ×smaller | b1 ms | ×faster b1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["levers"]:
        lines.append(
            f"| {row['lever']}: {row['what']} | {row['accuracy']:.2%} | "
            f"{row['accuracy_delta_points']:+.2f} | {row['size_ratio']:.2f} | "
            f"{row['b1_p50_ms']:.2f} | {row['speedup_b1']:.2f} "
            f"({row['speedup_b1_min']:.2f}–{row['speedup_b1_max']:.2f}) |"
        )
    features = ", ".join(m.get("cpu_features") or [])
    lines += [
        "",
        f"Measured on {m['cpu']} ({features}), 2 threads, sequence 64, {m['date']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--flagship",
        type=Path,
        default=RESULTS / "flagship-run",
        help="a run folder of recipes/distil_int8.yaml (bench/flagship.py)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "levers")
    parser.add_argument("--only", nargs="*", choices=sorted(LEVERS), default=None)
    parser.add_argument("--skip-run", action="store_true", help="only re-time existing runs")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--resume", action="store_true", help="reuse the finished steps of earlier runs"
    )
    args = parser.parse_args()
    teacher = args.flagship / "01-fine_tune"
    if not (teacher / "config.json").is_file():
        print(f"no flagship run at {args.flagship}: run python bench/flagship.py first")
        return 2
    names = args.only or list(LEVERS)
    for name in names:
        _, lever = LEVERS[name]
        folder = args.out / name
        recipe = write_recipe(name, teacher, passes_of(lever), folder)
        if not args.skip_run:
            if not args.resume:
                shutil.rmtree(folder / "run", ignore_errors=True)
            run_lever(recipe, folder / "run")
    done = [n for n in LEVERS if (args.out / n / "run" / "report.json").is_file()]
    timed = time_all(teacher, {n: cpu_file(args.out / n / "run") for n in done}, args.rounds)
    flagship_report = json.loads((args.flagship / "report.json").read_text())
    original = flagship_report["stages"][0]
    rows = []
    for name in done:
        row = lever_row(name, args.out / name / "run", original, timed)
        rows.append(row)
    from compress.benchmark.report import method_info
    from compress.benchmark.settings import BenchmarkSettings

    method = method_info(BenchmarkSettings(batch_sizes=[1]))
    result = {
        "original": {k: original[k] for k in ("accuracy", "size_bytes", "parameters")},
        "original_b1_p50_ms": timed["original_b1_p50_ms"],
        "rounds": args.rounds,
        "levers": rows,
        "method": method,
    }
    name = f"cpu_levers-{cpu_kind(method)}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
