"""TensorRT engines as a benchmark runtime: measured like any other model where a GPU can run them.

An engine file runs with the TensorRT flavour that built it (`build.json`
beside it says which; else full TensorRT, then TensorRT-RTX) through
`compress.trt.engine_runner`, the same runner deployment bundles use. A batch larger
than the engine's optimization profile allows runs as several engine calls,
so accuracy can be measured at any evaluation batch size; `max_batch` says
where that starts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import ModelLoadError, UserError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def engine_unavailable() -> str | None:
    """Why this machine cannot run TensorRT engines, or None when it can."""
    from compress.trt.cache import available_backends

    if not available_backends():
        return "no TensorRT is installed"
    if importlib.util.find_spec("torch") is None:
        return "running an engine needs PyTorch with CUDA for its GPU buffers"
    import torch

    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU; torch sees no CUDA device here"
    return None


def build_info(path: Path) -> dict[str, Any]:
    """What the build.json beside the engine `path` recorded (empty when there is none)."""
    info = path.parent / "build.json"
    try:
        data = json.loads(info.read_text()) if info.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def engine_backend(path: Path) -> str:
    """The backend that built `path` (from the build.json beside it), else "auto"."""
    backend = build_info(path).get("backend")
    return str(backend) if backend in ("tensorrt", "tensorrt_rtx") else "auto"


class TrtRuntime:
    """A serialized TensorRT engine, run on the GPU; returns logits like the other runtimes."""

    name = "tensorrt"

    def __init__(self, path: Path, backend: str | None = None) -> None:
        from compress.trt.builder import BACKEND_NAMES, collecting_logger
        from compress.trt.cache import import_backend, resolve_backend
        from compress.trt.engine_runner import EngineError, EngineRunner

        reason = engine_unavailable()
        if reason:
            raise UserError(f"cannot run the TensorRT engine {path.name}: {reason}")
        chosen = resolve_backend(backend or engine_backend(path))  # type: ignore[arg-type]
        trt = import_backend(chosen)
        try:
            self.runner: Any = EngineRunner(trt, path.read_bytes(), collecting_logger(trt))
        except (EngineError, OSError) as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
        self.input_names = list(self.runner.input_names)
        outputs = self.runner.output_names
        self._output = "logits" if "logits" in outputs else outputs[0]
        self.max_batch = int(self.runner.max_batch)
        self.name = "tensorrt" if chosen == "tensorrt" else "tensorrt-rtx"
        self.version = f"{BACKEND_NAMES[chosen]} {trt.__version__}"

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        from compress.trt.engine_runner import EngineError

        rows = len(next(iter(feeds.values())))
        parts = []
        for start in range(0, rows, self.max_batch):
            chunk = {k: v[start : start + self.max_batch] for k, v in feeds.items()}
            try:
                parts.append(self.runner(chunk)[self._output])
            except EngineError as exc:
                raise UserError(str(exc)) from None
        return np.concatenate(parts)

    def close(self) -> None:
        self.runner = None


def engine_source(artifact_path: Path, meta: dict[str, Any]) -> Path | None:
    """The ONNX file an engine step was built from, when the run still holds it."""
    step, file = meta.get("engine_source_step"), meta.get("engine_source")
    if not step or not file:
        return None
    source = artifact_path.parent / str(step) / str(file)
    return source if source.is_file() else None
