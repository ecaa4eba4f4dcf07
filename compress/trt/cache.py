"""Build TensorRT engines from ONNX with the TensorRT Python API, cached by what shapes them.

Two backends speak the same API: full TensorRT (`tensorrt`: data-center GPUs,
Jetson via JetPack; builds on the GPU it will run on) and TensorRT-RTX
(`tensorrt_rtx`: RTX-class GPUs; builds ahead of time, on a machine with no
GPU, for the compute capabilities asked for). Either is imported only when a
build runs.

An engine is cached under `cache_dir/<key>/` where the key hashes the ONNX
bytes, the backend and its version, the target compute capabilities and every
build option, so an identical build is read back instead of rebuilt.

    >>> options = BuildOptions("int8", batch=(1, 1, 8), sequence=(1, 128, 128))
    >>> built = build_engine(Path("model_int8_qdq.onnx"), "tensorrt_rtx", options,
    ...                      default_cache_dir())                       # doctest: +SKIP
    >>> built.info["network_layers"], built.info["cached"]             # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from compress.artifacts import hash_files, hash_json
from compress.errors import EngineBuildError, UserError
from compress.trt.builder import (
    BACKEND_NAMES,
    BuildFailed,
    BuildOptions,
    build_serialized,
    collecting_logger,
    network_flags,
    parse,
)

Backend = Literal["tensorrt", "tensorrt_rtx"]
BACKEND_MODULES: dict[str, Backend] = {"tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt_rtx"}
INSTALL_HINT = (
    "pip install 'edge-compress[tensorrt-rtx]' (TensorRT-RTX, builds on a machine without "
    "a GPU), or install TensorRT from NVIDIA (JetPack on Jetson)"
)
BUILD_FORMAT = 3  # bump when the builder code changes what an engine holds (3: decode opt)
ENGINE_FILE = "engine.plan"
INFO_FILE = "build.json"
LOG_FILE = "build.log"


@dataclass
class BuiltEngine:
    """An engine in the cache: its file, its build log, and what the build recorded."""

    engine: Path
    log: Path
    info: dict[str, Any] = field(default_factory=dict)


def available_backends() -> list[Backend]:
    """The TensorRT flavours importable here, full TensorRT first."""
    return [backend for backend in BACKEND_MODULES.values() if importlib.util.find_spec(backend)]


def resolve_backend(requested: Literal["auto", "tensorrt", "tensorrt_rtx"]) -> Backend:
    """The backend to build with: the one asked for, or (auto) full TensorRT, else RTX."""
    found = available_backends()
    if requested == "auto":
        if not found:
            raise UserError(f"no TensorRT is installed: {INSTALL_HINT}")
        return found[0]
    if requested not in found:
        raise UserError(f"'{BACKEND_MODULES[requested]}' is not installed: {INSTALL_HINT}")
    return requested


def import_backend(backend: Backend) -> Any:
    """The backend's module; a broken install (e.g. full TensorRT without its libs) is explained."""
    try:
        return importlib.import_module(BACKEND_MODULES[backend])
    except (ImportError, OSError) as exc:
        raise UserError(
            f"{BACKEND_NAMES[backend]} is installed but cannot be loaded ({exc}): {INSTALL_HINT}"
        ) from None


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/compress/engines`, else `~/.cache/compress/engines`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compress" / "engines"


def onnx_hash(path: Path) -> str:
    """Content hash of an ONNX file and of the external-data files it names."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = sorted(
        {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    )
    return hash_json([hash_files(path), *(hash_files(path.parent / loc) for loc in locations)])


def engine_key(onnx_digest: str, backend: Backend, version: str, options: BuildOptions) -> str:
    """The cache key of an engine."""
    return hash_json(
        {
            "format": BUILD_FORMAT,
            "onnx": onnx_digest,
            "backend": backend,
            "version": version,
            "options": asdict(options),
        }
    )


def build_engine(
    onnx_path: Path,
    backend: Backend,
    options: BuildOptions,
    cache_dir: Path,
    timing_cache: Path | None = None,
) -> BuiltEngine:
    """Build (or read back from `cache_dir`) the engine of `onnx_path`.

    Raises `EngineBuildError` listing every node the ONNX parser refused, or the
    builder's errors when it could not build. `timing_cache` (full TensorRT
    only; TensorRT-RTX ignores timing caches) is read before and written after.
    """
    trt = import_backend(backend)
    version = str(trt.__version__)
    key = engine_key(onnx_hash(onnx_path), backend, version, options)
    folder = cache_dir / key
    if (folder / ENGINE_FILE).is_file() and (folder / INFO_FILE).is_file():
        info = json.loads((folder / INFO_FILE).read_text())
        info["cached"] = True
        return BuiltEngine(folder / ENGINE_FILE, folder / LOG_FILE, info)

    source = onnx_path
    with tempfile.TemporaryDirectory(prefix="compress-trt-") as scratch:
        if options.precision in ("fp16", "int4") and backend == "tensorrt_rtx":
            # TensorRT-RTX networks are strongly typed (no FP16 flag): the graph must be FP16
            # (int4: FP16 activations and scales, the weights stay INT4).
            source = to_fp16(onnx_path, Path(scratch) / "model_fp16.onnx")
        logger = collecting_logger(trt)
        started = time.perf_counter()
        try:
            engine, network_info = build_serialized(
                trt, backend, source, options, logger, timing_cache
            )
        except BuildFailed as exc:
            raise EngineBuildError(exc.what, exc.problems) from None
        network_info["onnx_nodes"] = _onnx_nodes(source)
        seconds = time.perf_counter() - started
    info = {
        "backend": backend,
        "backend_name": BACKEND_NAMES[backend],
        "backend_version": version,
        "key": key,
        "onnx": onnx_path.name,
        "precision": options.precision,
        "precision_from": _precision_note(backend, options.precision),
        "compute_capabilities": list(options.compute_capabilities)
        if backend == "tensorrt_rtx"
        else ["the GPU it was built on"],
        **network_info,
        "options": asdict(options),
        "build_seconds": round(seconds, 3),
        "engine_bytes": len(engine),
        "timing_cache": str(timing_cache)
        if backend == "tensorrt" and timing_cache
        else "not used" + (" by TensorRT-RTX" if backend == "tensorrt_rtx" else ""),
        "warnings": logger.count("WARNING"),
    }
    _store(folder, engine, info, logger.text())
    info["cached"] = False
    return BuiltEngine(folder / ENGINE_FILE, folder / LOG_FILE, info)


def _precision_note(backend: Backend, precision: str) -> str:
    if precision == "int8":
        return "explicit Q/DQ nodes of the ONNX model (no calibrator)"
    if precision == "int4":
        if backend == "tensorrt_rtx":
            return "weight-only INT4 DequantizeLinear nodes; ONNX converted to FP16 activations"
        return "weight-only INT4 DequantizeLinear nodes; FP16 activations (builder flag)"
    if precision == "fp16":
        if backend == "tensorrt_rtx":
            return "ONNX converted to FP16 (inputs/outputs kept), strongly typed network"
        return "FP16 builder flag on the FP32 ONNX model"
    return "FP32 ONNX model as it is"


def to_fp16(source: Path, target: Path) -> Path:
    """An FP16 copy of an FP32 ONNX model, with float inputs and outputs kept as they are."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target


def parser_errors(onnx_path: Path, backend: Backend) -> list[str]:
    """What the backend's ONNX parser refuses in `onnx_path` (empty: every node parsed).

    Parsing needs no GPU, so this works wherever the backend is installed.
    """
    trt = import_backend(backend)
    logger = collecting_logger(trt)
    builder = trt.Builder(logger)
    return parse(trt, builder.create_network(network_flags(trt)), logger, onnx_path)


def supported_operator(backend: Backend) -> Any:
    """A function `op_type -> bool` answered by the backend's own ONNX parser."""
    trt = import_backend(backend)
    logger = collecting_logger(trt)
    network = trt.Builder(logger).create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    return lambda op_type: bool(parser.supports_operator(op_type))


def _onnx_nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _store(folder: Path, engine: bytes, info: dict[str, Any], log: str) -> None:
    """Write the cache entry into a temporary folder and move it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    (partial / ENGINE_FILE).write_bytes(engine)
    (partial / LOG_FILE).write_text(log)
    (partial / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if folder.exists():  # another build of the same key finished first: keep it
        shutil.rmtree(partial, ignore_errors=True)
        return
    os.replace(partial, folder)
