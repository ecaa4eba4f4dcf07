"""The deployment bundle of a text-generation run: the ONNX model, its tokenizer, `generate.py`.

The quantized (else the FP32) ONNX export of the run, with its external data,
the tokenizer and the model's configs, a `generate.py` that decodes with the
KV cache on ONNX Runtime (CPU; numpy, onnxruntime and tokenizers only), a
README, and `manifest.json` (sha256 of every file, the context length, the
end-of-text tokens, and what the run's report measured for this file).

For a device with an NVIDIA GPU (an RTX card, a Jetson), the bundle carries
the run's weight-only INT4 file for TensorRT (`quantize.weight_only.targets:
[tensorrt]`) where the run wrote one, and what builds its engine on the
device: `build_engine.py` with a verbatim copy of compress's builder
(`trt_core.py`), and `build_engine.sh` for `trtexec`. The engine's profile
covers the prompt (an empty KV cache) and decode steps up to the bundle's
sequence length. A CPU device gets the CPU file.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress._version import __version__
from compress.artifacts import RunFolder, StepResult, Variant
from compress.deploy.bundle import Bundle, finish_bundle
from compress.deploy.devices import Device, get_device
from compress.errors import UserError
from compress.trt.options import EngineShapes

log = logging.getLogger(__name__)

FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
SCRIPT = Path(__file__).parent / "scripts" / "generate.py"


def pick_lm_model(steps: list[StepResult], gpu: bool = False) -> tuple[StepResult, Variant]:
    """The last ONNX file of the run (a quantized one is the last when the run quantizes);
    on a `gpu` device the last weight-only INT4 file for TensorRT where there is one, else
    (and on a CPU) the last file not written for TensorRT."""
    if gpu:
        for step in reversed(steps):
            for variant in step.artifact.variants:
                if _for_tensorrt(variant) and not step.skipped:
                    return step, variant
    for step in reversed(steps):
        for variant in step.artifact.variants:
            cpu = variant.runtime == "onnxruntime" and variant.target != "tensorrt"
            if cpu and not step.skipped:
                return step, variant
    raise UserError("the run has no ONNX model to bundle: add export_onnx (and quantize)")


def _for_tensorrt(variant: Variant) -> bool:
    return (variant.runtime, variant.target, variant.precision) == (
        "onnxruntime",
        "tensorrt",
        "int4",
    )


def _expected(run: RunFolder, step: StepResult, variant: Variant) -> dict[str, Any]:
    report = run.report()
    for stage in (report or {}).get("stages", []):
        if stage.get("step") == step.folder.name and stage.get("variant") == variant.name:
            return {
                "perplexity": stage.get("perplexity"),
                "task_accuracy": stage.get("accuracy"),
                "decode_tokens_per_s": stage.get("speed", {}).get("decode_tokens_per_s"),
                "measured_on": (report or {}).get("method", {}).get("cpu"),
            }
    return {"why": "the run's report did not measure this file"}


def make_lm_bundle(
    run: RunFolder,
    out: Path,
    target: str,
    log: Callable[[str], None] = log.info,
    shapes: EngineShapes | None = None,
    workspace_mb: int | None = None,
) -> Bundle:
    """Write the bundle folder `out` and `out.tar.gz` of the finished run `run` for the device
    `target`; `shapes` and `workspace_mb` shape the engine a GPU device builds."""
    device = get_device(target)
    steps = run.steps()
    step, variant = pick_lm_model(steps, device.has_gpu)
    engine = device.has_gpu and _for_tensorrt(variant)
    step.require_unchanged()
    source = step.artifact.file(variant)
    config = json.loads((step.folder / "config.json").read_text(encoding="utf-8"))
    eos = config.get("eos_token_id")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        shutil.copyfile(source, partial / source.name)
        data = source.with_name(source.name + ".data")
        if data.is_file():
            shutil.copyfile(data, partial / data.name)
        for name in FILES:
            if (step.folder / name).is_file():
                shutil.copyfile(step.folder / name, partial / name)
        shutil.copyfile(SCRIPT, partial / "generate.py")
        manifest: dict[str, Any] = {
            "bundle_format": 1,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": str(run.recipe()["task"]),
            "target": target,
            "model": {
                "file": source.name,
                "source": f"{step.folder.name}/{variant.file}",
                "precision": variant.precision,
            },
            "context_length": int(config.get("max_position_embeddings", 2048)),
            "eos_token_ids": eos if isinstance(eos, list) else [eos] if eos is not None else [],
            "expected": _expected(run, step, variant),
            "versions": {"compress": __version__, **step.manifest.get("versions", {})},
            "requirements": ["onnxruntime", "tokenizers", "numpy"],
        }
        if engine:
            max_length = int(run.recipe()["data"]["max_length"])
            _engine_files(partial, manifest, device, shapes or EngineShapes(), max_length)
            manifest["engine"]["workspace_mb"] = workspace_mb or device.workspace_mb
            (partial / "build_engine.sh").write_text(_trtexec(manifest))
            (partial / "build_engine.sh").chmod(0o755)
        (partial / "README.md").write_text(_readme(manifest), encoding="utf-8")
        tarball = finish_bundle(partial, out, manifest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = tarball.stat().st_size / 1e6
    log(f"bundle ({variant.precision} {source.name}) -> {tarball} ({size:.1f} MB)")
    return Bundle(out, tarball, manifest)


def _engine_files(
    folder: Path, manifest: dict[str, Any], device: Device, shapes: EngineShapes, max_length: int
) -> None:
    """The engine build script and builder beside the INT4 file, and what they read from
    the manifest (the target's TensorRT and compute capability, the engine's ranges)."""
    from compress.deploy.bundle import SCRIPTS, vendored_files

    shutil.copyfile(SCRIPTS / "build_engine.py", folder / "build_engine.py")
    for name, module in vendored_files().items():
        shutil.copyfile(module, folder / name)
    import onnx

    graph = onnx.load(str(folder / manifest["model"]["file"]), load_external_data=False).graph
    names = [t.name for t in graph.input]
    past = next(t for t in graph.input if t.name.startswith("past_key_values."))
    dims = [d.dim_value for d in past.type.tensor_type.shape.dim]
    manifest["model"].update(inputs=names, kv_heads=dims[1], head_dim=dims[3])
    manifest["target"] = device.to_json()
    manifest["engine"] = {
        "precision": "int4",
        "batch": list(shapes.batch.as_tuple()),
        "sequence": list(shapes.sequence_range(max_length)),
    }


def _trtexec(manifest: dict[str, Any]) -> str:
    """`trtexec` building the same INT4 engine (FP16 activations) as build_engine.py."""
    engine = manifest["engine"]
    minimum, optimum, maximum = engine["sequence"]
    batches = engine["batch"]
    shapes = {}
    for which, flag in enumerate(("minShapes", "optShapes", "maxShapes")):
        parts = []
        for name in manifest["model"]["inputs"]:
            batch = batches[which]
            if name.startswith("past_key_values."):
                past = (0, max(optimum - 1, 0), maximum)[which]
                dims = [batch, manifest["model"]["kv_heads"], past, manifest["model"]["head_dim"]]
            elif name == "attention_mask":
                dims = [batch, (minimum, optimum, maximum)[which]]
            else:
                dims = [batch, (minimum, 1, maximum)[which]]
            parts.append(f"{name}:{'x'.join(map(str, dims))}")
        shapes[flag] = ",".join(parts)
    shown = " ".join(f"--{k}={v}" for k, v in shapes.items())
    return (
        "#!/bin/sh\n"
        "# The INT4 engine build_engine.py builds, with NVIDIA's trtexec (JetPack:\n"
        "# /usr/src/tensorrt/bin/trtexec): weight-only INT4 from the DequantizeLinear nodes,\n"
        "# FP16 activations. The profile covers the prompt (empty cache) and decode steps.\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"\n'
        f'"$TRTEXEC" --onnx={manifest["model"]["file"]} --saveEngine=model.engine --fp16 \\\n'
        f"  {shown} \\\n"
        f'  --memPoolSize=workspace:{engine["workspace_mb"]} "$@"\n'
    )


def _readme(manifest: dict[str, Any]) -> str:
    expected = manifest["expected"]
    figures = ", ".join(
        f"{k.replace('_', ' ')} {v:.4g}" for k, v in expected.items() if isinstance(v, float)
    )
    engine = manifest.get("engine")
    on_gpu = (
        (
            "Build its TensorRT engine on the device (the engine runs only on the GPU "
            "architecture and TensorRT version that built it):\n\n"
            "    python3 build_engine.py        # TensorRT (JetPack) or TensorRT-RTX\n"
            "    ./build_engine.sh              # the same with trtexec\n\n"
            f"Weight-only INT4 (FP16 activations with TensorRT; TensorRT-RTX keeps the file's "
            f"FP32 ones); batch {engine['batch'][0]}-{engine['batch'][2]}, up to "
            f"{engine['sequence'][2]} tokens (a prompt with an empty KV cache, then decode "
            "steps). ONNX Runtime runs the same file:\n\n"
        )
        if engine
        else "Run it on a CPU:\n\n"
    )
    return (
        f"# {manifest['model']['file']} ({manifest['model']['precision']})\n\n"
        + on_gpu
        + "    pip install onnxruntime tokenizers numpy\n"
        '    python generate.py "The capital of France is" --max-new-tokens 32\n'
        '    python generate.py --chat "Write a haiku about the sea."  # needs jinja2\n\n'
        f"Context: {manifest['context_length']} tokens (prompt plus new tokens). "
        f"The run measured: {figures or 'nothing for this file'}"
        f"{' on ' + expected['measured_on'] if expected.get('measured_on') else ''}.\n"
        "`manifest.json` holds the sha256 of every file.\n"
    )
