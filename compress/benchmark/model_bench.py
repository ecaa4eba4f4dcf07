"""`compress bench model`: benchmark one model file or folder on chosen runtimes.

Any model artifact compress writes or reads can be measured: a Hugging Face
or image model folder (PyPI torch runtimes), an ONNX file (ONNX Runtime) or a
TensorRT engine (on an NVIDIA GPU with the TensorRT that built it); a file's
tokenizer or preprocessing is read from its folder. For every
runtime, latency is measured at each batch size (and, for text, each
sequence length), so the result shows how cost grows with the work. Results
are JSON first (`SCHEMA_VERSION`); Markdown, HTML and a plot are rendered
from that JSON.
"""

from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from compress.errors import ModelLoadError, UserError
from compress.tasks import classifier_task

SCHEMA_VERSION = 1
TORCH_RUNTIMES: dict[str, dict[str, Any]] = {
    "torch": {},
    "torch-compile": {"compile": True},
    "torch-cuda": {"device": "cuda"},
    "torch-cuda-fp16": {"device": "cuda", "half": True},
    "torch-cuda-compile": {"device": "cuda", "half": True, "compile": True},
}
ORT_RUNTIMES = {
    "onnxruntime": ["CPUExecutionProvider"],
    "onnxruntime-cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "onnxruntime-tensorrt": [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ],
}
ENGINE_RUNTIMES = {"tensorrt": None}  # the TensorRT flavour that built the engine
RUNTIME_TABLES: dict[str, dict[str, Any]] = {
    "torch": TORCH_RUNTIMES,
    "onnx": ORT_RUNTIMES,
    "tensorrt": ENGINE_RUNTIMES,
}


@dataclass(frozen=True)
class ModelBenchSpec:
    """What to measure and how; recorded in the result."""

    model: Path
    runtimes: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8])
    sequence_lengths: list[int] = field(default_factory=lambda: [64])
    threads: int = 2
    warmup: int = 10
    repetitions: int = 50
    data: str | None = None
    eval_samples: int | None = None
    task: str | None = None
    accuracy: bool = True


def detect(model: Path) -> tuple[str, str, Path]:
    """(kind "torch", "onnx" or "tensorrt", task name, folder holding its preprocessing)."""
    from compress.trt.runtime import ENGINE_SUFFIXES
    from compress.vision.images import PROCESSOR_FILE

    if model.is_file() and model.suffix in (".onnx", *ENGINE_SUFFIXES):
        folder = model.parent
        image = (folder / PROCESSOR_FILE).is_file() and not (folder / "tokenizer.json").exists()
        kind = "onnx" if model.suffix == ".onnx" else "tensorrt"
        return kind, classifier_task(images=image), folder
    if model.is_dir() and (model / "config.json").is_file():
        from compress.vision.folder import is_image_folder

        return "torch", classifier_task(images=is_image_folder(model)), model
    raise ModelLoadError(
        f"{model}: not an ONNX file, a TensorRT engine (.engine/.plan/.trt) "
        "or a model folder with config.json"
    )


def bench_model(spec: ModelBenchSpec, progress: bool = False) -> dict[str, Any]:
    """Measure `spec.model` on every runtime; the JSON-able result."""
    from tqdm.auto import tqdm

    from compress.benchmark.bench_data import align_labels, examples, model_labels
    from compress.benchmark.evaluate import evaluate
    from compress.benchmark.measure import measure_latency
    from compress.benchmark.report import method_info
    from compress.benchmark.settings import BenchmarkSettings
    from compress.benchmark.stage import latency_entry
    from compress.tasks import get_task

    kind, detected, folder = detect(spec.model)
    task = get_task(spec.task or detected)
    table = RUNTIME_TABLES[kind]
    runtimes = spec.runtimes or [next(iter(table))]
    for name in runtimes:
        if name not in table:
            raise UserError(f"runtime '{name}' cannot run a {kind} model (use: {', '.join(table)})")
    processor = task.load_processor(folder)
    source = spec.data or task.sample_data
    data = examples(source, task.data_reader)
    scored = spec.accuracy and (spec.data is not None or spec.eval_samples is not None)
    labels_note = "not scored: latency only"
    if scored:
        data, labels_note = align_labels(data, model_labels(folder))
    inputs = data.test.inputs
    seq_lengths = spec.sequence_lengths if task.input_kind == "texts" else [0]
    settings = BenchmarkSettings(threads=spec.threads)
    results = []
    for name in runtimes:
        runtime = _open(kind, name, spec, task)
        entry: dict[str, Any] = {"runtime": name, "latency": []}
        try:
            shapes = [(b, s) for s in seq_lengths for b in spec.batch_sizes]
            for batch, seq in tqdm(shapes, desc=name, disable=not progress):
                feeds = task.fixed_batch(processor, inputs, batch, seq or 1)
                stats = measure_latency(partial(runtime, feeds), spec.warmup, spec.repetitions)
                row = {"batch_size": batch, **latency_entry(stats, batch)}
                calls = -(-batch // getattr(runtime, "max_batch", batch))
                if calls > 1:  # an engine whose profile stops below this batch size
                    row["engine_calls"] = calls
                if seq:
                    row["sequence_length"] = seq
                entry["latency"].append(row)
            if scored and data.labelled:
                scores = evaluate(
                    runtime,
                    processor,
                    data.test.head(spec.eval_samples),
                    max(seq_lengths) or 64,
                    settings.eval_batch_size,
                    progress,
                    task,
                )
                entry.update(accuracy=scores["accuracy"], macro_f1=scores["macro_f1"])
                entry["n_eval"] = scores["n"]
            entry["peak_memory_mb"] = _peak_memory_mb(name)
        finally:
            runtime.close()
        results.append(entry)
    method = method_info(settings)
    method.update(
        warmup=spec.warmup,
        repetitions=spec.repetitions,
        batch_sizes=list(spec.batch_sizes),
        sequence_lengths=seq_lengths if seq_lengths != [0] else None,
        example_shape=task.shape(processor, max(seq_lengths)),
        data=source,
        labels=labels_note,
        task=task.name,
        gpu=_gpu_name(),
    )
    method.pop("sequence_length", None)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": str(spec.model),
        "kind": kind,
        **_model_facts(spec.model, kind, task, processor),
        "method": method,
        "runtimes": results,
    }


def _open(kind: str, name: str, spec: ModelBenchSpec, task: Any) -> Any:
    from compress.benchmark.runtimes import OrtRuntime, TorchRuntime

    if kind == "torch":
        return TorchRuntime(spec.model, spec.threads, task, **TORCH_RUNTIMES[name])
    if kind == "tensorrt":
        from compress.trt.runtime import TrtRuntime

        return TrtRuntime(spec.model)
    return OrtRuntime(spec.model, spec.threads, ORT_RUNTIMES[name])


def _model_facts(model: Path, kind: str, task: Any, processor: Any) -> dict[str, Any]:
    from compress.artifacts import Artifact, Variant
    from compress.benchmark.runtimes import count_parameters, model_size_bytes

    if kind == "torch":
        artifact = Artifact("hf", model, "bench", [Variant("fp32", "torch", "fp32", "portable")])
        variant = artifact.variants[0]
        loaded, _ = task.load(str(model), None)
        meta = task.model_meta(loaded, processor, 64)
    elif kind == "tensorrt":  # parameters are those of the ONNX file it was built from
        return {"size_bytes": model.stat().st_size, "parameters": None, **_build_facts(model)}
    else:
        variant = Variant("onnx", "onnxruntime", "unknown", "portable", model.name)
        artifact = Artifact("onnx", model.parent, "bench", [variant])
        meta = {}
    return {
        "size_bytes": model_size_bytes(artifact, variant),
        "parameters": count_parameters(artifact, variant, task),
        "macs_per_example": meta.get("macs_per_example"),
        "macs_per_token": meta.get("macs_per_token"),
    }


def _build_facts(engine: Path) -> dict[str, Any]:
    """What build.json beside an engine says about how it was built."""
    from compress.trt.runtime import build_info

    info = build_info(engine)
    keep = ("backend_name", "backend_version", "precision", "compute_capabilities", "options")
    return {"engine_build": {k: info[k] for k in keep if k in info}} if info else {}


def _peak_memory_mb(runtime: str) -> float:
    """GPU: peak memory torch allocated; CPU: the process's peak resident memory.

    For a TensorRT engine that is its input and output buffers only: the
    engine's own weights and activations are allocated by TensorRT.
    """
    if ("cuda" in runtime and runtime.startswith("torch")) or runtime == "tensorrt":
        import torch

        peak = torch.cuda.max_memory_allocated() / 1e6
        torch.cuda.reset_peak_memory_stats()
        return float(peak)
    scale = 1e6 if platform.system() == "Darwin" else 1e3  # ru_maxrss: bytes on macOS, else KiB
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / scale


def _gpu_name() -> str | None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def write_results(result: dict[str, Any], out: Path) -> list[Path]:
    """bench.json, bench.md, bench.html and bench.png (when matplotlib is there) in `out`."""
    from compress.benchmark.model_bench_render import plot_scaling, render_html, render_markdown

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "bench.json", out / "bench.md", out / "bench.html"]
    written[0].write_text(json.dumps(result, indent=2) + "\n")
    png = out / "bench.png"
    has_plot = plot_scaling(result, png)
    written[1].write_text(render_markdown(result))
    written[2].write_text(render_html(result, png if has_plot else None))
    return [*written, png] if has_plot else written


def load_results(path: Path) -> dict[str, Any]:
    """A bench.json, checked for its schema version."""
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read benchmark results ({exc})") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema_version {data.get('schema_version')} is not supported")
    return data


def timestamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
