"""Does pruning's FLOPs cut show up as speed? Run recipes/prune_minilm.yaml and account for it.

    python bench/prune_speedup.py [--out DIR]

For the pruned model (PyTorch FP32 and its ONNX Runtime FP32 export) this
prints, beside each other: the matmul-FLOPs ratio, the parameter ratio and
the MEASURED latency ratio against the unpruned fine-tuned original at each
batch size, and their quotient (measured speedup / FLOPs ratio; 1.0 means
every FLOP removed became speed). All from one run of the recipe, so the
original and the pruned model are measured back to back. Results:
bench/results/prune_speedup.json and .md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TARGET_QUOTIENT = 0.7
MAX_ACCURACY_DROP = 2.0


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for stage in report["stages"][1:]:
        vs = stage["vs_original"]
        out.append(
            {
                "stage": stage["stage"],
                "variant": stage["variant"],
                "runtime": stage["runtime"],
                "accuracy_delta_points": vs["accuracy_delta_points"],
                "parameter_ratio": vs["parameter_ratio"],
                "flops_ratio": vs.get("flops_ratio"),
                "speedup": vs["speedup"],
                "speedup_per_flops": vs.get("speedup_per_flops"),
            }
        )
    return out


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Pruning speedup accounting (recipes/prune_minilm.yaml)",
        "",
        "Original: fine-tuned MiniLM-L6 (PyTorch FP32), accuracy "
        f"{result['original_accuracy']:.4f}.",
        "",
        "| stage | runtime | Δacc (pt) | ×fewer params | ×fewer FLOPs | ×faster b1 | ×faster b8 "
        "| quotient b1 | quotient b8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        q = r["speedup_per_flops"] or {}
        lines.append(
            f"| {r['stage']}:{r['variant']} | {r['runtime']} | {r['accuracy_delta_points']:+.2f} "
            f"| {r['parameter_ratio']:.2f} | {r['flops_ratio'] or 0:.2f} "
            f"| {r['speedup']['b1']:.2f} | {r['speedup']['b8']:.2f} "
            f"| {q.get('b1', 0):.2f} | {q.get('b8', 0):.2f} |"
        )
    m = result["method"]
    lines += [
        "",
        f"Quotient = measured speedup / FLOPs ratio against the original; target >= "
        f"{TARGET_QUOTIENT} with accuracy loss <= {MAX_ACCURACY_DROP} points. Method: "
        f"sequence {m['sequence_length']}, {m['threads']} threads, {m['warmup']} warm-up + "
        f"{m['repetitions']} timed runs, {m['cpu']}, {m['date']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "prune-run")
    args = parser.parse_args()
    recipe = ROOT / "recipes" / "prune_minilm.yaml"
    cmd = [sys.executable, "-m", "compress", "run", str(recipe), "--out", str(args.out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    report = json.loads((args.out / "report.json").read_text())
    result = {
        "original_accuracy": report["stages"][0]["accuracy"],
        "rows": rows(report),
        "method": report["method"],
    }
    pruned = result["rows"][0]
    result["targets"] = {
        "quotient b8 >= 0.7 (PyTorch)": (pruned["speedup_per_flops"] or {}).get("b8", 0)
        >= TARGET_QUOTIENT,
        "accuracy drop <= 2 pt": -pruned["accuracy_delta_points"] <= MAX_ACCURACY_DROP,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "prune_speedup.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "prune_speedup.md").write_text(to_markdown(result))
    print(to_markdown(result))
    print(result["targets"])
    return 0 if all(result["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
