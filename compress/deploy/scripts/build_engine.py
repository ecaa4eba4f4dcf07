"""Build this bundle's TensorRT engine on the device, with the builder code compress uses.

    python3 build_engine.py                  # full TensorRT (JetPack); writes model.engine
    python3 build_engine.py --precision fp16 --batch 1,1,4

Defaults (model, precision, batch and sequence ranges, workspace) come from
manifest.json. Engines only run on the GPU architecture and TensorRT version
that built them, which is why the build happens here. `trt_core.py` is a
verbatim copy of compress's builder (its sha256 is in manifest.json).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _range(text: str) -> tuple[int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(f"want MIN,OPT,MAX with MIN <= OPT <= MAX (got {text})")
    return values[0], values[1], values[2]


def main(argv: list[str] | None = None) -> int:
    manifest: dict[str, Any] = json.loads((HERE / "manifest.json").read_text())
    engine = manifest["engine"]
    parser = argparse.ArgumentParser(description="Build model.engine from this bundle's ONNX")
    parser.add_argument("--onnx", default=manifest["model"]["file"])
    parser.add_argument("--out", default="model.engine")
    parser.add_argument("--backend", choices=["auto", "tensorrt", "tensorrt_rtx"], default="auto")
    parser.add_argument(
        "--precision", choices=["fp32", "fp16", "int8"], default=engine["precision"]
    )
    parser.add_argument("--batch", type=_range, default=tuple(engine["batch"]))
    parser.add_argument("--sequence", type=_range, default=tuple(engine["sequence"]))
    parser.add_argument("--workspace-mb", type=int, default=engine["workspace_mb"])
    parser.add_argument(
        "--compute-capability",
        action="append",
        default=None,
        help="TensorRT-RTX only (default: the target's)",
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    import trt_core

    backend = args.backend
    if backend == "auto":
        backend = next(
            (name for name in ("tensorrt", "tensorrt_rtx") if _importable(name)), "tensorrt"
        )
    try:
        trt = importlib.import_module(backend)
    except ImportError as exc:
        print(f"error: cannot import {backend} ({exc}); {manifest['target']['tensorrt']}")
        return 2
    if backend == "tensorrt_rtx" and args.precision == "fp16":
        print("error: TensorRT-RTX builds FP16 only from an FP16 graph: use int8 or fp32")
        return 2
    capabilities = tuple(args.compute_capability or [manifest["target"]["compute_capability"]])
    options = trt_core.BuildOptions(
        precision=args.precision,
        batch=args.batch,
        sequence=args.sequence,
        workspace_mb=args.workspace_mb,
        compute_capabilities=capabilities if backend == "tensorrt_rtx" else (),
    )
    logger = trt_core.collecting_logger(trt)
    started = time.perf_counter()
    try:
        serialized, info = trt_core.build_serialized(
            trt, backend, HERE / args.onnx, options, logger
        )
    except trt_core.BuildFailed as exc:
        print(f"error: {exc}")
        return 1
    out = HERE / args.out
    out.write_bytes(serialized)
    (HERE / "build.log").write_text(logger.text())
    info.update(
        backend=backend,
        backend_version=str(trt.__version__),
        precision=args.precision,
        build_seconds=round(time.perf_counter() - started, 3),
        engine_bytes=len(serialized),
        compute_capabilities=list(options.compute_capabilities) or ["this GPU"],
    )
    (HERE / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"{out.name}: {len(serialized) / 1e6:.2f} MB, {info['network_layers']} layers, "
        f"{backend} {trt.__version__}, built in {info['build_seconds']:.1f} s"
    )
    return 0


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
