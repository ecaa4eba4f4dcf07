"""Deployment bundles: a run's model packaged for one device, runnable without compress.

    >>> run = RunFolder(Path("runs/distil_int8"))                              # doctest: +SKIP
    >>> made = make_bundle(run, Path("runs/distil_int8/bundle-jetson-orin-nano"),
    ...                    BundleSpec(get_device("jetson-orin-nano")))         # doctest: +SKIP
    >>> made.tarball.name                                                      # doctest: +SKIP
    'bundle-jetson-orin-nano.tar.gz'

The model is read from the run's step folders (the last step holding the
wanted ONNX file), the expected accuracy from its report when that report
measured exactly this file (same artifact key). Engines are not shipped: they
run only on the GPU architecture and TensorRT version that built them, so
`build_engine.py` builds one on the device with a verbatim copy of
`compress/trt/builder.py` (as `trt_core.py`), and `infer.py` runs it with a
copy of `compress/trt/engine_runner.py` (as `trt_exec.py`); no compress
install is needed there.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress._version import __version__
from compress.artifacts import RunFolder, StepResult, Variant, sha256_file
from compress.deploy.devices import Device, check_precision
from compress.deploy.readme import device_readme, trtexec_script
from compress.errors import UserError
from compress.trt.options import EngineShapes

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 1
MODEL_FILE = "model.onnx"
PREPROCESSING = (
    "config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
SCRIPTS = Path(__file__).parent / "scripts"


@dataclass(frozen=True)
class BundleSpec:
    """What to package: for which device, which ONNX file, and the engine it builds there."""

    device: Device
    model: str = "auto"
    precision: str = "auto"
    shapes: EngineShapes = field(default_factory=EngineShapes)
    workspace_mb: int | None = None


@dataclass
class Bundle:
    """A written bundle: its folder, its tarball and its manifest."""

    folder: Path
    tarball: Path
    manifest: dict[str, Any]


def vendored_files() -> dict[str, Path]:
    """The compress modules a GPU bundle carries verbatim, by their name in the bundle."""
    from compress.trt import builder, engine_runner

    return {"trt_core.py": Path(builder.__file__), "trt_exec.py": Path(engine_runner.__file__)}


def pick_model(steps: list[StepResult], want: str, device: Device) -> tuple[StepResult, Variant]:
    """The step and ONNX variant to ship: the last one in the run matching `want`."""
    if want == "auto":
        order = ["tensorrt", "fp32"] if device.has_gpu else ["cpu", "fp32"]
    else:
        order = [want]
    onnx_steps = [s for s in steps if s.artifact.kind == "onnx" and not s.skipped]
    for wanted in order:
        for step in reversed(onnx_steps):
            matches = [v for v in step.artifact.variants if _matches(v, wanted)]
            if matches:
                return step, sorted(matches, key=lambda v: v.precision != "int8")[0]
    have = [f"{s.folder.name}:{v.name}" for s in onnx_steps for v in s.artifact.variants]
    raise UserError(
        f"the run has no ONNX model for model '{want}' (has {have or 'no ONNX step'}); "
        "add export_onnx / quantize to the recipe"
    )


def _matches(variant: Variant, wanted: str) -> bool:
    if wanted == "tensorrt":
        return variant.target == "tensorrt" and variant.runtime == "onnxruntime"
    if wanted == "cpu":
        return variant.target == "cpu"
    return variant.target == "portable" and variant.precision == "fp32"


def engine_precision(wanted: str, variant: Variant, device: Device) -> str:
    """The precision the device runs (its engine, or ONNX Runtime on a CPU device)."""
    qdq = variant.target == "tensorrt" and variant.precision == "int8"
    precision = wanted
    if precision == "auto":
        if qdq or not device.has_gpu:
            precision = variant.precision
        else:
            precision = "fp16" if "fp16" in device.precisions else "fp32"
    check_precision(device, precision)
    if device.has_gpu and qdq and precision != "int8":
        raise UserError(f"the Q/DQ model {variant.file} builds int8 engines (got {precision})")
    if device.has_gpu and precision == "int8" and not qdq:
        raise UserError(
            f"an int8 engine is built from the TensorRT Q/DQ file, not {variant.file}: "
            "quantize with targets [tensorrt] and use model: tensorrt"
        )
    if not device.has_gpu and precision != variant.precision:
        raise UserError(f"{variant.file} is {variant.precision}; on the CPU it runs as it is")
    return precision


def make_bundle(
    run: RunFolder, out: Path, spec: BundleSpec, log: Callable[[str], None] = log.info
) -> Bundle:
    """Write the bundle folder `out` and `out.tar.gz` from the finished run `run`."""
    device = spec.device
    recipe = run.recipe()
    steps = run.steps()
    step, variant = pick_model(steps, spec.model, device)
    step.require_unchanged()
    precision = engine_precision(spec.precision, variant, device)
    task = str(recipe["task"])
    max_length = int(recipe["data"]["max_length"])

    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        source = step.artifact.file(variant)
        shutil.copyfile(source, partial / MODEL_FILE)
        for extra in _external_data(source):
            shutil.copyfile(source.parent / extra, partial / extra)
        for name in PREPROCESSING:
            if (step.folder / name).is_file():
                shutil.copyfile(step.folder / name, partial / name)
        inputs, outputs = _io(partial / MODEL_FILE)
        engine = {
            "precision": precision,
            "batch": list(spec.shapes.batch.as_tuple()),
            "sequence": list(spec.shapes.sequence_range(max_length)),
            "workspace_mb": spec.workspace_mb or device.workspace_mb,
        }
        manifest: dict[str, Any] = {
            "bundle_format": BUNDLE_FORMAT,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": task,
            "target": device.to_json(),
            "model": {
                "file": MODEL_FILE,
                "source": f"{step.folder.name}/{variant.file}",
                "variant": variant.name,
                "precision": variant.precision,
                "for": variant.target,
                "note": variant.note,
                "inputs": list(inputs),
                "input_shapes": inputs,
                "outputs": outputs,
            },
            "labels": _labels(partial / "config.json"),
            "max_length": max_length,
            "pad_token": _pad_token(partial / "tokenizer_config.json"),
            "engine": engine if device.has_gpu else None,
            "checked_by": _engine_check(steps, step, variant),
            "expected": _expected(run, step, variant),
            "source_run": _source_run(run, recipe, step),
            "versions": {"compress": __version__, **step.manifest.get("versions", {})},
            "requirements": _requirements(inputs),
        }
        _write_scripts(partial, manifest, device)
        tarball = finish_bundle(partial, out, manifest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    accuracy = manifest["expected"].get("accuracy")
    shown = f", expected accuracy {accuracy:.2%}" if isinstance(accuracy, float) else ""
    log(
        f"bundle for {device.name} (SM {device.compute_capability or '-'}, {precision}): "
        f"{manifest['model']['source']}{shown} -> {tarball} "
        f"({tarball.stat().st_size / 1e6:.1f} MB)"
    )
    return Bundle(out, tarball, manifest)


def finish_bundle(partial: Path, out: Path, manifest: dict[str, Any]) -> Path:
    """Hash every file of the `partial` folder into `manifest.json`, put the folder in place
    as `out` and pack `out.tar.gz` (each step atomic); returns the tarball."""
    manifest["files"] = {
        p.relative_to(partial).as_posix(): sha256_file(p)
        for p in sorted(partial.rglob("*"))
        if p.is_file()
    }
    (partial / "manifest.json").write_text(_json(manifest))
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    tarball = out.with_name(f"{out.name}.tar.gz")
    temporary = tarball.with_name(f".{tarball.name}.partial")
    with tarfile.open(temporary, "w:gz") as tar:
        tar.add(out, arcname=out.name)
    os.replace(temporary, tarball)
    return tarball


def _json(data: Any) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"


def _external_data(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sorted(
        {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    )


def _io(path: Path) -> tuple[dict[str, list[int | str]], list[str]]:
    """Input names with their shapes (named dynamic axes as text) and output names."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs: dict[str, list[int | str]] = {}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        inputs[value.name] = [d.dim_param or "?" if not d.dim_value else d.dim_value for d in dims]
    return inputs, [value.name for value in graph.output]


def _labels(config: Path) -> list[str]:
    from compress.artifacts import label_names

    names = label_names(config)
    if names is None:
        raise UserError(f"{config}: cannot read the label names (id2label)")
    return names


def _pad_token(config: Path) -> str:
    import json

    try:
        pad = json.loads(config.read_text()).get("pad_token", "[PAD]")
    except (OSError, ValueError):
        return "[PAD]"
    return str(pad.get("content", "[PAD]") if isinstance(pad, dict) else pad)


def _engine_check(
    steps: list[StepResult], source: StepResult, variant: Variant
) -> dict[str, Any] | None:
    """The run's engine build from this very file, if there was one: NVIDIA's parser took it."""
    for step in steps:
        meta = step.artifact.meta
        if step.artifact.kind != "engine" or "tensorrt" not in meta:
            continue
        if meta.get("engine_source_step") == source.folder.name and (
            meta.get("engine_source") == variant.file
        ):
            built = meta["tensorrt"]
            keep = ("backend_name", "backend_version", "compute_capabilities", "network_layers")
            return {"step": step.folder.name, **{k: built.get(k) for k in keep}}
    return None


def _expected(run: RunFolder, step: StepResult, variant: Variant) -> dict[str, Any]:
    """Accuracy of this file from the run's report, when it measured exactly this artifact."""
    try:
        report = run.report()
    except UserError as exc:
        return {"accuracy": None, "why": f"the run's report cannot be read ({exc})"}
    if report is None:
        return {"accuracy": None, "why": "the run has no report.json (run `compress report`)"}
    for stage in report.get("stages", []):
        if stage.get("step") == step.folder.name and stage.get("variant") == variant.name:
            if stage.get("artifact_key") != step.artifact.key:
                break
            method = report.get("method", {})
            how = (
                stage.get("accuracy_method") or f"{stage.get('runtime', 'onnxruntime')} on the CPU"
            )
            return {
                "accuracy": stage.get("accuracy"),
                "macro_f1": stage.get("macro_f1"),
                "measured_on": f"{method.get('data', {}).get('test_rows')} test rows, {how}",
                "report": str((run.path / "report.json").resolve()),
            }
    return {"accuracy": None, "why": "the run's report did not measure this file"}


def _source_run(run: RunFolder, recipe: dict[str, Any], step: StepResult) -> dict[str, Any]:
    reproduce = run.reproduce()
    return {
        "run_dir": str(run.path.resolve()),
        "recipe": recipe.get("name"),
        "recipe_sha": reproduce.get("recipe_sha"),
        "seed": reproduce.get("seed"),
        "step": step.folder.name,
        "step_key": step.artifact.key,
    }


def _requirements(inputs: dict[str, Any]) -> list[str]:
    """What infer.py needs on the device: Pillow for images, tokenizers for texts."""
    return ["numpy", "onnxruntime", "pillow" if "pixel_values" in inputs else "tokenizers"]


def _write_scripts(folder: Path, manifest: dict[str, Any], device: Device) -> None:
    shutil.copyfile(SCRIPTS / "infer.py", folder / "infer.py")
    (folder / "requirements.txt").write_text(
        "# infer.py with ONNX Runtime; on Jetson, the onnxruntime-gpu wheel for your JetPack\n"
        + "".join(f"{name}\n" for name in manifest["requirements"])
    )
    if device.has_gpu:
        shutil.copyfile(SCRIPTS / "build_engine.py", folder / "build_engine.py")
        for name, module in vendored_files().items():
            shutil.copyfile(module, folder / name)
        script = folder / "build_engine.sh"
        script.write_text(trtexec_script(manifest))
        script.chmod(0o755)
    (folder / "README.md").write_text(device_readme(manifest, device))
