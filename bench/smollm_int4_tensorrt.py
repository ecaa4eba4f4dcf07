"""SmolLM2-135M weight-only INT4 for TensorRT next to the CPU INT4 file, on the same text.

    python bench/smollm_int4_tensorrt.py [--algorithms rtn scale_estimation]

From the offline default `smollm2-135m` (the dequantized FP32 SmolLM2-135M-
Instruct, "the original"): the KV-cache export (portable `model.onnx`, and
ONNX Runtime's fused graph), then per algorithm the CPU file (`MatMulNBits`,
from the fused graph; the defaults: 8-bit head shared with the embedding) and
the TensorRT file (`DequantizeLinear` -> `MatMul`, opset 21, from the portable
graph; 8-bit head per column, its own INT4 embedding). Measured: perplexity on
the first 200 Rotten Tomatoes test texts (max 64 tokens, one text a sequence),
zero-shot sentiment accuracy on 500 test texts, size on disk, greedy tokens of
the TensorRT file against the CPU file's (8 test prompts, 32 new tokens), and
the TensorRT-RTX engine build (INT4, FP16 activations) with its time and size.
The TensorRT file is scored exactly (ONNX Runtime, no graph optimization).
Results: bench/results/smollm_int4_tensorrt-<isa>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def _size(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _quality(lm: Any, tokenizer: Any, texts: list[str], labels: list[int], args: Any) -> dict:
    from compress.llm.scores import label_scores, perplexity, task_accuracy

    prompt, words = "Review: {text}\nSentiment:", ["negative", "positive"]
    ppl = perplexity(lm, tokenizer, texts[: args.perplexity_texts], 64)
    scores = label_scores(lm, tokenizer, texts[: args.task_samples], prompt, words, 64)
    lm.close()
    return {
        "perplexity": ppl["perplexity"],
        "task_accuracy": task_accuracy(scores, labels[: args.task_samples]),
    }


def _greedy(file: Path, exact: bool, prompts: list[list[int]], new: int) -> list[list[int]]:
    from compress.llm.runtime import OrtLM

    lm = OrtLM(file, exact=exact)
    tokens = [lm.generate(p, new).tokens for p in prompts]
    lm.close()
    return tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-smollm-int4-tensorrt"))
    parser.add_argument("--algorithms", nargs="+", default=["rtn"])
    parser.add_argument("--perplexity-texts", type=int, default=200)
    parser.add_argument("--task-samples", type=int, default=500)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from compress.benchmark.report import method_info
    from compress.benchmark.settings import BenchmarkSettings
    from compress.data.corpus import load_corpus
    from compress.data.spec import DataSpec
    from compress.llm.calibrated import calibration_sequences
    from compress.llm.export import export_with_past, fuse_decoder
    from compress.llm.int4 import quantize_weights
    from compress.llm.int4_qdq import quantize_weights_qdq
    from compress.llm.models import load_lm, resolve_lm_source
    from compress.llm.options import WeightOnlyConfig
    from compress.llm.runtime import OrtLM, TorchLM
    from compress.system import cpu_features
    from compress.trt.builder import BuildOptions
    from compress.trt.cache import build_engine

    location = resolve_lm_source("smollm2-135m")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = load_corpus(DataSpec())
    texts, labels = list(data.test.texts), [int(x) for x in data.test.labels]
    model, tokenizer = load_lm(location)
    started = time.perf_counter()
    portable = work / "fp32" / "model.onnx"
    if not (work / "fp32" / "model_ort.onnx").is_file():  # an earlier run's export is reused
        export_with_past(model, tokenizer, work / "fp32", 18)
        fuse_decoder(portable, work / "fp32" / "model_ort.onnx", model.config)
    builds: dict[str, Any] = {"export_seconds": round(time.perf_counter() - started, 1)}
    figures: dict[str, Any] = {
        "original (PyTorch FP32)": _quality(TorchLM(model), tokenizer, texts, labels, args)
    }
    figures["original (PyTorch FP32)"]["size_bytes"] = (
        (Path(location) / "model.safetensors").stat().st_size
    )
    prompts = [tokenizer(t)["input_ids"][:24] for t in texts[:8]]
    for algorithm in args.algorithms:
        wo = WeightOnlyConfig(algorithm=algorithm, targets=["cpu", "tensorrt"])
        calibration = (
            calibration_sequences(tokenizer, list(data.train.texts), wo.calibration_samples, 0, 64)
            if wo.calibrated
            else []
        )
        out = work / algorithm
        shutil.copytree(
            work / "fp32", out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.onnx*")
        )
        started = time.perf_counter()
        quantize_weights(
            out.parent / "fp32" / "model_ort.onnx", out / "model_int4.onnx", wo, False, calibration
        )
        cpu_s = time.perf_counter() - started
        started = time.perf_counter()
        summary = quantize_weights_qdq(
            portable, out / "model_int4_qdq.onnx", wo, False, calibration
        )
        qdq_s = time.perf_counter() - started
        for label, file, exact in (
            (f"cpu INT4 {algorithm} (MatMulNBits)", out / "model_int4.onnx", False),
            (f"tensorrt INT4 {algorithm} (DQ -> MatMul, exact)", out / "model_int4_qdq.onnx", True),
        ):
            print(f"scoring {label}", flush=True)
            row = _quality(OrtLM(file, exact=exact), tokenizer, texts, labels, args)
            figures[label] = {**row, "size_bytes": _size(file)}
        cpu_tokens = _greedy(out / "model_int4.onnx", False, prompts, 32)
        trt_tokens = _greedy(out / "model_int4_qdq.onnx", True, prompts, 32)
        same = sum(
            a == b
            for x, y in zip(cpu_tokens, trt_tokens, strict=True)
            for a, b in zip(x, y, strict=True)
        )
        first = sum(x[0] == y[0] for x, y in zip(cpu_tokens, trt_tokens, strict=True))
        engine: dict[str, Any] = {}
        try:
            options = BuildOptions("int4", (1, 1, 1), (1, 64, 256), 2048, False, ("8.9",))
            built = build_engine(
                out / "model_int4_qdq.onnx", "tensorrt_rtx", options, Path(tempfile.mkdtemp())
            )
            engine = {
                k: built.info[k]
                for k in (
                    "backend_version",
                    "build_seconds",
                    "engine_bytes",
                    "network_layers",
                    "precision_from",
                )
            }
        except Exception as exc:  # reported, not hidden
            engine = {"error": str(exc)[:500]}
        builds[algorithm] = {
            "cpu_quantize_seconds": round(cpu_s, 1),
            "tensorrt_quantize_seconds": round(qdq_s, 1),
            "tensorrt_summary": summary,
            "greedy_same_tokens": [same, sum(len(x) for x in cpu_tokens)],
            "greedy_same_first_token": [first, len(prompts)],
            "engine": engine,
        }
        print(json.dumps(builds[algorithm], default=str), flush=True)
    base = figures["original (PyTorch FP32)"]
    for row in figures.values():
        row["perplexity_change"] = row["perplexity"] / base["perplexity"] - 1
        row["x_smaller"] = base["size_bytes"] / row["size_bytes"]
    method = method_info(BenchmarkSettings(threads=2))
    result = {"figures": figures, "builds": builds, "method": method, "load": os.getloadavg()}
    kind = "avx512_vnni" if "avx512_vnni" in cpu_features() else "avx2"
    named = "" if args.algorithms == ["rtn"] else "-" + "-".join(args.algorithms)
    stem = RESULTS / f"smollm_int4_tensorrt-{kind}{named}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    lines = [
        "# SmolLM2-135M weight-only INT4: the TensorRT file next to the CPU file",
        "",
        "| model | size (MB) | x smaller | perplexity | vs original | task accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["figures"].items():
        lines.append(
            f"| {name} | {row['size_bytes'] / 1e6:.1f} | {row['x_smaller']:.2f}x | "
            f"{row['perplexity']:.2f} | {100 * row['perplexity_change']:+.1f}% | "
            f"{100 * row['task_accuracy']:.1f}% |"
        )
    lines.append("")
    for name, build in result["builds"].items():
        if not isinstance(build, dict):
            continue
        engine = build["engine"]
        shown = (
            f"TensorRT-RTX {engine['backend_version']} INT4 engine (SM 8.9, batch 1, sequence "
            f"1-256) built in {engine['build_seconds']:.0f} s, "
            f"{engine['engine_bytes'] / 1e6:.1f} MB"
            if "build_seconds" in engine
            else f"engine: {engine.get('error')}"
        )
        same, total = build["greedy_same_tokens"]
        lines.append(
            f"- {name}: quantized in {build['tensorrt_quantize_seconds']:.0f} s (cpu file "
            f"{build['cpu_quantize_seconds']:.0f} s); greedy tokens equal to the cpu file's on "
            f"{same}/{total} positions; {shown}."
        )
    method = result["method"]
    lines += [
        "",
        "Perplexity: Rotten Tomatoes test texts, one per sequence, max 64 tokens; task: "
        "zero-shot sentiment. The TensorRT file is scored exactly (ONNX Runtime, no graph "
        "optimization: DequantizeLinear then MatMul in FP32).",
        f"CPU: {method['cpu']} ({', '.join(method['cpu_features'])}); load average "
        f"{', '.join(f'{x:.1f}' for x in result['load'])}; {method['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
