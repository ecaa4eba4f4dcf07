"""Per-layer INT8-or-float under a size budget, on real models of finished runs.

    python bench/flagship.py                 # once: writes bench/results/flagship-run
    python bench/mixed_precision.py          # then this: about 2 minutes on 2 cores
    python bench/mixed_precision.py --run runs/fashion_mnist_effnet_int8 \
        --export 03-export_onnx --qat 05-qat --name effnet

Takes a run's FP32 ONNX step (default: the flagship's 05-export_onnx, MiniLM-L6
distilled to 3 layers, pruned, vocabulary-pruned) and writes its TensorRT-form
post-training INT8 Q/DQ file with `quantize: {float_size_budget: B}` for each
budget B (0 = every layer INT8), calibrated on 256 training rows (min-max).
Every file is scored on the run's test split with its Q/DQ graph executed
exactly (what TensorRT computes), beside the FP32 model and the run's QAT file.
Results: bench/results/mixed_precision[-NAME].json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
RUN = RESULTS / "flagship-run"
BUDGETS = (0.0, 0.1, 0.25, 0.5, 1.0)


def main() -> int:
    from compress.artifacts import finished_step
    from compress.data.loaders import load_dataset
    from compress.passes.base import PassContext
    from compress.passes.quantize import QuantizeConfig, apply
    from compress.passkit.io import onnx_validation_accuracy
    from compress.recipe import load_recipe
    from compress.system import cpu_features, cpu_model
    from compress.tasks import get_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=RUN, help="a finished flagship run folder")
    parser.add_argument("--export", default="05-export_onnx", help="the run's ONNX step folder")
    parser.add_argument("--qat", default="07-qat", help="the run's QAT step folder, if any")
    parser.add_argument("--name", default="", help="suffix of the result files")
    parser.add_argument("--out", type=Path, default=RESULTS / "mixed-precision")
    args = parser.parse_args()
    export = args.run / args.export
    if not (export / "model.onnx").is_file():
        print(f"no {export}/model.onnx: run `python bench/flagship.py` first", file=sys.stderr)
        return 2
    recipe = load_recipe(args.run / "recipe.resolved.yaml")
    data = load_dataset(recipe.doc.data, args.run, recipe.doc.task)
    task = get_task(recipe.doc.task)
    test_view = dataclasses.replace(data, validation=data.test)  # scores on the test split
    step = finished_step(export)
    if step is None:
        print(f"{export}: not a finished step", file=sys.stderr)
        return 2
    artifact = step.artifact
    seq = recipe.doc.data.max_length

    def score(file: Path, exact: bool) -> float:
        ctx = PassContext(args.out, test_view, seq, recipe.doc.seed, "s", progress=False, task=task)
        return onnx_validation_accuracy(ctx, ctx.task.load_processor(export), file, exact, False)

    rows: list[dict[str, Any]] = [
        {"file": "FP32 (model.onnx)", "test_accuracy": score(export / "model.onnx", False)}
    ]
    for budget in BUDGETS:
        work = args.out / f"budget-{budget:g}"
        work.mkdir(parents=True, exist_ok=True)
        ctx = PassContext(work, data, seq, recipe.doc.seed, "mp", progress=False, task=task)
        cfg = QuantizeConfig(
            targets=["tensorrt"],
            calibration_samples=256,
            float_size_budget=budget or None,
        )
        apply(artifact, cfg, ctx)
        file = work / "model_int8_qdq.onnx"
        chosen = ctx.metrics.get("mixed_precision", {}).get(file.name, {})
        rows.append(
            {
                "file": f"PTQ Q/DQ, float_size_budget {budget:g}",
                "float_layers": len(chosen.get("float_layers", [])),
                "megabytes": file.stat().st_size / 1e6,
                "test_accuracy": score(file, True),
                "validation_accuracy": ctx.metrics["validation_accuracy"][file.name],
            }
        )
        print(rows[-1], flush=True)
    qat = args.run / args.qat / "model_int8_qdq.onnx"
    if qat.is_file():
        rows.append(
            {
                "file": f"QAT Q/DQ ({args.qat})",
                "megabytes": qat.stat().st_size / 1e6,
                "test_accuracy": score(qat, True),
            }
        )
    result = {"run": recipe.resolved["name"], "cpu": cpu_model(), "cpu_features": cpu_features()}
    result["rows"] = rows
    stem = "mixed_precision" + (f"-{args.name}" if args.name else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Per-layer INT8 or float under a size budget ({result['run']}, TensorRT Q/DQ)",
        "",
        f"CPU: {result['cpu']} ({', '.join(result['cpu_features'])}). Test accuracy on "
        f"{len(data.test.labels)} test examples of {recipe.doc.data.source}, Q/DQ executed "
        "exactly.",
        "",
        "| file | float layers | MB | test accuracy |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        mb = f"{row['megabytes']:.2f}" if "megabytes" in row else ""
        lines.append(
            f"| {row['file']} | {row.get('float_layers', '')} | {mb} | "
            f"{100 * row['test_accuracy']:.2f}% |"
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
