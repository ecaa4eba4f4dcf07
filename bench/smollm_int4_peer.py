"""SmolLM2-135M as INT4 for CPUs: compress against onnxruntime-genai's model builder, one run.

    python bench/smollm_int4_peer.py --builder-python PEER_VENV/bin/python [--rounds 5]
        [--variants rtn-lm4 gptq-lm4gptq] [--reuse-export] [--suffix -NAME]

Both start from the same model: the offline default `smollm2-135m` (the
dequantized FP32 SmolLM2-135M-Instruct, "the original"). compress exports it
with its KV cache (optimum, ONNX Runtime's decoder fusions, attention as
GroupQueryAttention; a tied LM head reads the one embedding matrix) and
quantizes it weight-only the ways named in `VARIANTS` (`--variants` picks
some; the embedding is shared with the LM head in all): `rtn-lm4` (round to
nearest, a 4-bit head, as the builder's), `rtn-lm4gptq` (the 4-bit head by
GPTQ on 64 training texts), `gptq-lm4gptq` (GPTQ for the layers too,
symmetric), `se-lm4se` (NNCF's scale estimation for layers and head), and the
8-bit-head ones: `rtn-lm8`, `se-lm8`, `awq-se-lm8` (NNCF's AWQ, then scale
estimation), `hqq-qkv` (HQQ on the packed QKV projections, the rest rounded to
nearest) and `hqq-lm8` (HQQ except the down/gate projections); HQQ's float
zero points become integer ones plus a per-block correction. The peer is
`python -m onnxruntime_genai.models.builder -p int4 -e cpu` (round to
nearest, symmetric, 4-bit head shared with the lookup), run by
`--builder-python`: the builder imports transformers 5.x classes, so it lives
in its own environment (`pip install torch==2.13.0 onnxruntime-genai onnx_ir
'transformers>=5,<6'`).

Measured here, all in one process and one run: perplexity on the first 200
test texts of the fixed Rotten Tomatoes split (one text per sequence, BOS
added), zero-shot sentiment accuracy on 500 test texts, size on disk, and
greedy decoding at batch 1 with the KV cache (time to first token for 32-
and 128-token prompts, decode tokens/s over 64 new tokens), the models
taking turns for `--rounds` rounds, with the load average recorded (on a
shared machine only the interleaved ratios compare). Results:
bench/results/smollm_int4_peer-<cpu><suffix>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def _size(folder: Path, names: list[str]) -> int:
    return sum((folder / n).stat().st_size for n in names if (folder / n).is_file())


LM8 = {"lm_head_bits": 8, "lm_head_block_size": 64, "lm_head_symmetric": True}
LM4GPTQ = {"lm_head_bits": 4, "lm_head_algorithm": "gptq"}  # symmetric, block 32
VARIANTS = {  # quantize.weight_only options (embedding shared with the LM head in all)
    "rtn-lm4": {"algorithm": "rtn", "lm_head_bits": 4},
    "rtn-lm4gptq": {"algorithm": "rtn", **LM4GPTQ},
    "gptq-lm4gptq": {"algorithm": "gptq", **LM4GPTQ},
    "se-lm4se": {
        "algorithm": "scale_estimation",
        "lm_head_bits": 4,
        "lm_head_algorithm": "scale_estimation",
    },
    "rtn-lm8": {"algorithm": "rtn", **LM8},
    "se-lm8": {"algorithm": "scale_estimation", **LM8},
    "awq-se-lm8": {"algorithm": "scale_estimation", "awq": True, **LM8},
    "hqq-qkv": {"algorithm": "hqq", "rtn_layers": [".*/(o_proj|mlp/.*)/.*"], **LM8},
    "hqq-lm8": {"algorithm": "hqq", "rtn_layers": [".*/mlp/(down|gate)_proj/.*"], **LM8},
}


def build_ours(
    location: str, work: Path, train_texts: list[str], variants: list[str], reuse: bool
) -> dict[str, Any]:
    from compress.llm.calibrated import calibration_sequences
    from compress.llm.export import export_with_past, fuse_decoder, lm_parity
    from compress.llm.genai import write_genai_config
    from compress.llm.int4 import quantize_weights
    from compress.llm.models import load_lm
    from compress.llm.options import WeightOnlyConfig
    from compress.llm.tied import tie_file

    model, tokenizer = load_lm(location)
    start = time.perf_counter()
    fp32 = work / "fp32" / "model.onnx"
    fused: dict[str, int] = {}
    if not (reuse and fp32.with_name("model_ort.onnx").is_file()):
        fp32 = export_with_past(model, tokenizer, work / "fp32", 18)
        tie_file(fp32)  # what export_onnx does: one copy of the tied embedding
        fused, skipped = fuse_decoder(fp32, work / "fp32" / "model_ort.onnx", model.config)
        if skipped:
            raise SystemExit(f"the attention was not fused: {skipped}")
    export_s = time.perf_counter() - start
    sequences = tokenizer(["The capital of France is", "A long and boring film."])["input_ids"]
    parity = {
        f.name: lm_parity(model, f, sequences, 2e-3)
        for f in (fp32, fp32.with_name("model_ort.onnx"))
    }
    builds: dict[str, Any] = {
        "export_seconds": export_s,
        "export_bytes": {f.name: f.stat().st_size for f in (work / "fp32").glob("model*.onnx*")},
        "parity": parity,
        "fused": fused,
    }
    for name in variants:
        options = VARIANTS[name]
        out = work / f"int4-{name}"
        shutil.copytree(
            work / "fp32", out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.onnx*")
        )
        start = time.perf_counter()
        wo = WeightOnlyConfig(**options)
        # the texts the quantize pass picks at the recipe's default seed and max_length
        calibration = (
            calibration_sequences(tokenizer, train_texts, wo.calibration_samples, 0, 64)
            if wo.uses_calibration
            else []
        )
        summary = quantize_weights(
            fp32.with_name("model_ort.onnx"), out / "model_int4.onnx", wo, False, calibration
        )
        write_genai_config(out, "model_int4.onnx")
        builds[name] = {
            "folder": out,
            "options": wo.model_dump(mode="json"),
            "quantize_seconds": time.perf_counter() - start,
            "summary": summary,
            "size_bytes": _size(out, ["model_int4.onnx", "model_int4.onnx.data"]),
        }
    return builds


def build_peer(python: str, location: str, work: Path) -> dict[str, Any]:
    out = work / "builder"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [python, "-m", "onnxruntime_genai.models.builder", "-i", location, "-o", str(out)]
    cmd += ["-p", "int4", "-e", "cpu", "-c", str(work / "builder-cache")]
    start = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the model builder failed: {done.stderr.strip().splitlines()[-1]}")
    version = subprocess.run(
        [python, "-c", "import onnxruntime_genai, transformers; "
         "print(onnxruntime_genai.__version__, transformers.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return {
        "folder": out,
        "file": "model.onnx",
        "build_seconds": time.perf_counter() - start,
        "size_bytes": _size(out, ["model.onnx", "model.onnx.data"]),
        "versions": {"onnxruntime-genai": version[0], "transformers (builder env)": version[1]},
    }


def measure(
    models: dict[str, Any], texts: list[str], labels: list[int], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Quality of every model file once, then speed with every runtime taking turns."""
    from compress.benchmark.generation import prompts_of
    from compress.llm.genai import GenaiLM
    from compress.llm.models import load_lm, load_lm_tokenizer
    from compress.llm.runtime import OrtLM, TorchLM
    from compress.llm.scores import label_scores, perplexity, task_accuracy

    tokenizer = load_lm_tokenizer(Path(models["original"]["folder"]))
    prompt, words = "Review: {text}\nSentiment:", ["negative", "positive"]
    ours, peer = models["ours"], models["peer"]["folder"]
    # (row name, file key for quality and size, runtime)
    rows: dict[str, tuple[str, Any]] = {
        "original (PyTorch FP32)": ("original", TorchLM(load_lm(models["original"]["folder"])[0])),
    }
    for name in args.variants:
        folder = ours[name]["folder"]
        rows[f"compress INT4 {name} (ONNX Runtime)"] = (name, OrtLM(folder / "model_int4.onnx"))
        rows[f"compress INT4 {name} (onnxruntime-genai)"] = (name, GenaiLM(folder, args.threads))
    rows["builder INT4 (onnxruntime-genai)"] = ("builder", GenaiLM(peer, args.threads))
    scorers = {"builder": OrtLM(peer / "model.onnx")}  # the builder's file in ONNX Runtime
    out: dict[str, dict[str, Any]] = {}
    seen: dict[str, dict[str, Any]] = {}
    for name, (key, lm) in rows.items():
        if key not in seen:
            print(f"scoring {name} ...", flush=True)
            scorer = scorers.get(key, lm)
            ppl = perplexity(scorer, tokenizer, texts[: args.perplexity_texts], 64)
            scores = label_scores(scorer, tokenizer, texts[: args.task_samples], prompt, words, 64)
            seen[key] = {
                "perplexity": ppl["perplexity"],
                "perplexity_tokens": ppl["tokens"],
                "task_accuracy": task_accuracy(scores, labels[: args.task_samples]),
            }
        out[name] = {"model": key, **seen[key]}
    for _, lm in rows.values():  # every timed runtime at the same thread count
        if isinstance(lm, TorchLM | OrtLM):
            lm.close()
    timed: dict[str, Any] = {
        "original (PyTorch FP32)": TorchLM(load_lm(models["original"]["folder"])[0], args.threads)
    }
    for name, (key, lm) in rows.items():
        if name in timed:
            continue
        timed[name] = (
            OrtLM(ours[key]["folder"] / "model_int4.onnx", args.threads)
            if ("(ONNX Runtime)" in name)
            else lm
        )
    prompts = prompts_of(tokenizer, texts, [32, 128])
    ttft: dict[str, dict[int, list[float]]] = {n: {32: [], 128: []} for n in timed}
    decode: dict[str, list[float]] = {n: [] for n in timed}
    tokens: dict[str, list[int]] = {}
    for lm in timed.values():
        lm.generate(prompts[32], 4)  # warm-up
    for round_ in range(args.rounds):
        print(f"timing round {round_ + 1}/{args.rounds}", flush=True)
        for name, lm in timed.items():
            run = lm.generate(prompts[32], 64)
            ttft[name][32].append(run.first_token_s * 1000)
            decode[name].append(run.decode_tokens_per_s)
            tokens[name] = run.tokens
            ttft[name][128].append(lm.generate(prompts[128], 1).first_token_s * 1000)
    for name in timed:
        out[name].update(
            ttft_ms={str(n): statistics.median(v) for n, v in ttft[name].items()},
            decode_tokens_per_s=statistics.median(decode[name]),
            decode_rounds=decode[name],
            generated=tokens[name],
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builder-python", required=True, help="python of the builder's venv")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-smollm-int4"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--perplexity-texts", type=int, default=200)
    parser.add_argument("--task-samples", type=int, default=500)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="compress variants to build and measure (default: all)",
    )
    parser.add_argument(
        "--reuse-export", action="store_true", help="keep WORK/fp32 when it is there already"
    )
    parser.add_argument("--suffix", default="", help="appended to the result files' names")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from compress.benchmark.report import method_info
    from compress.benchmark.settings import BenchmarkSettings
    from compress.data.corpus import load_corpus
    from compress.data.spec import DataSpec
    from compress.llm.models import resolve_lm_source
    from compress.system import cpu_features

    location = resolve_lm_source("smollm2-135m")
    args.work.mkdir(parents=True, exist_ok=True)
    data = load_corpus(DataSpec())
    models: dict[str, Any] = {
        "original": {
            "folder": location,
            "size_bytes": _size(Path(location), ["model.safetensors"]),
        },
        "ours": build_ours(
            location, args.work, list(data.train.texts), args.variants, args.reuse_export
        ),
        "peer": build_peer(args.builder_python, location, args.work),
    }
    load_before = os.getloadavg()
    figures = measure(models, data.test.texts, [int(x) for x in data.test.labels], args)
    load_after = os.getloadavg()
    sizes = {
        "original": models["original"]["size_bytes"],
        "builder": models["peer"]["size_bytes"],
        **{name: models["ours"][name]["size_bytes"] for name in args.variants},
    }
    base = figures["original (PyTorch FP32)"]
    peer = figures["builder INT4 (onnxruntime-genai)"]
    for row in figures.values():
        row["size_bytes"] = sizes[row["model"]]
        row["x_smaller"] = sizes["original"] / row["size_bytes"]
        row["perplexity_change"] = row["perplexity"] / base["perplexity"] - 1
        row["decode_vs_builder"] = row["decode_tokens_per_s"] / peer["decode_tokens_per_s"]
        row["same_greedy_tokens_as_original"] = sum(
            a == b for a, b in zip(row["generated"], base["generated"], strict=False)
        )
    method = method_info(BenchmarkSettings(threads=args.threads))
    strip = ("folder",)
    result = {
        "figures": figures,
        "builds": {
            "compress": {
                k: (
                    {kk: vv for kk, vv in v.items() if kk not in strip}
                    if isinstance(v, dict)
                    else v
                )
                for k, v in models["ours"].items()
            },
            "builder": {k: v for k, v in models["peer"].items() if k not in strip},
        },
        "method": {
            **method,
            "rounds": args.rounds,
            "new_tokens": 64,
            "prompt_lengths": [32, 128],
            "variants": args.variants,
            "load_average_1_5_15": {"before": load_before, "after": load_after},
        },
    }
    kind = "avx512_vnni" if "avx512_vnni" in cpu_features() else "avx2"
    stem = RESULTS / f"smollm_int4_peer-{kind}{args.suffix}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    method = result["method"]
    lines = [
        "# SmolLM2-135M INT4 on a CPU: compress vs onnxruntime-genai's model builder",
        "",
        "| model | size (MB) | x smaller | perplexity | vs original | task accuracy | "
        "TTFT 32 tok (ms) | TTFT 128 tok (ms) | decode tok/s | vs builder |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["figures"].items():
        lines.append(
            f"| {name} | {row['size_bytes'] / 1e6:.1f} | {row['x_smaller']:.2f}x | "
            f"{row['perplexity']:.1f} | {100 * row['perplexity_change']:+.1f}% | "
            f"{100 * row['task_accuracy']:.1f}% | {row['ttft_ms']['32']:.1f} | "
            f"{row['ttft_ms']['128']:.1f} | {row['decode_tokens_per_s']:.1f} | "
            f"{row['decode_vs_builder']:.2f}x |"
        )
    builds = result["builds"]
    ours = builds["compress"]
    quantized = ", ".join(
        f"{n} {ours[n]['quantize_seconds']:.0f} s" for n in method.get("variants", VARIANTS)
    )
    lines += [
        "",
        f"Builds: compress export {ours['export_seconds']:.0f} s, INT4 {quantized}; "
        f"builder {builds['builder']['build_seconds']:.0f} s "
        f"({', '.join(f'{k} {v}' for k, v in builds['builder']['versions'].items())}).",
        "Perplexity: 200 Rotten Tomatoes test texts, one per sequence; task: zero-shot "
        "sentiment, 500 test texts; decode: greedy, batch 1, 64 new tokens after a 32-token "
        "prompt, medians of "
        f"{method['rounds']} interleaved rounds, {method['threads']} threads.",
        f"Load average (1/5/15 min) before measuring {_load(method, 'before')}, after "
        f"{_load(method, 'after')} (a shared machine: compare the interleaved ratios).",
        f"CPU: {method['cpu']} ({', '.join(method['cpu_features'])}); "
        + ", ".join(f"{k} {v}" for k, v in method["versions"].items())
        + f"; {method['date']}.",
    ]
    return "\n".join(lines) + "\n"


def _load(method: dict[str, Any], when: str) -> str:
    values = method.get("load_average_1_5_15", {}).get(when)
    return "/".join(f"{v:.1f}" for v in values) if values else "not recorded"


if __name__ == "__main__":
    raise SystemExit(main())
