"""The deployment bundle of a sentence-embedding run: the ONNX model, its tokenizer, `embed.py`.

The run's deployable ONNX file (the last one it made; its `cpu` variant for a CPU
target), with its external data, the tokenizer and the model's configs (also a
sentence-transformers `modules.json` and `1_Pooling/config.json`), an `embed.py` that
embeds texts on ONNX Runtime (numpy, onnxruntime and tokenizers only), a README, and
`manifest.json` (sha256 of every file, the max length, the embedding dimension, and
what the run's report measured for this file).

The graph pools and L2-normalizes itself: its output `sentence_embedding` [batch, dim]
is the embedding. TensorRT engines are not built for embedding bundles (`embed.py`
runs ONNX Runtime only), so the target `tensorrt` is refused.
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
from compress.errors import UserError

log = logging.getLogger(__name__)

FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "1_Pooling/config.json",
)
OUTPUT = "sentence_embedding"
SCRIPT = Path(__file__).parent / "scripts" / "embed.py"
SCORES = ("cosine_mean", "cosine_p5", "knn_accuracy", "knn_accuracy_original", "majority_baseline")


def _is_cpu(target: str) -> bool:
    """Whether `target` is the CPU: `cpu`, or a known device without a GPU."""
    if target == "cpu":
        return True
    from compress.deploy.devices import DEVICE_NAMES, get_device

    return target in DEVICE_NAMES and not get_device(target).has_gpu


def pick_embed_model(steps: list[StepResult], target: str) -> tuple[StepResult, Variant]:
    """The ONNX Runtime file to ship: the run's last `cpu` file for a CPU target (a branch
    such as QAT may run after it), else the last ONNX Runtime file of the run."""
    if target == "tensorrt":
        raise UserError(
            "an embedding bundle runs its ONNX file with ONNX Runtime (embed.py); it builds no "
            "TensorRT engine: bundle for a CPU target (cpu, x86-cpu) or a device's name"
        )
    cpu = _is_cpu(target)
    ran = [s for s in steps if not s.skipped]
    files = [
        (s, v) for s in ran for v in s.artifact.variants if v.runtime == "onnxruntime" and v.file
    ]
    wanted = [(s, v) for s, v in files if v.target == "cpu"] if cpu else []
    if wanted:  # the run's last CPU file for a CPU device (a QAT branch may run after it)
        return wanted[-1]
    if files:  # else the first file of the last step that wrote one
        last = files[-1][0]
        return next((s, v) for s, v in files if s is last)
    raise UserError("the run has no ONNX model to bundle: add export_onnx (and quantize)")


def _external_data(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sorted(
        {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    )


def _graph(path: Path) -> tuple[list[str], int | None]:
    """The graph's input names and the static size of `sentence_embedding`'s last axis."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in initializers]
    outputs = {v.name: v for v in graph.output}
    if OUTPUT not in outputs:
        raise UserError(
            f"{path}: no '{OUTPUT}' output (has {', '.join(outputs)}): not a sentence-embedding "
            "graph with pooling inside"
        )
    dims = outputs[OUTPUT].type.tensor_type.shape.dim
    if len(dims) != 2:
        raise UserError(f"{path}: '{OUTPUT}' has {len(dims)} axes, not [batch, dim]")
    return inputs, (int(dims[1].dim_value) if dims[1].dim_value else None)


def _measured_dim(model: Path, tokenizer: Path, inputs: list[str]) -> int:
    """The embedding dimension, from one short text through the model (a dynamic axis)."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer)).encode("hello").ids[:8] or [0]
    columns = {
        "input_ids": np.asarray([ids], dtype=np.int64),
        "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
        "token_type_ids": np.zeros((1, len(ids)), dtype=np.int64),
    }
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    feeds = {
        n: columns[n].astype(np.int32 if types[n] == "tensor(int32)" else np.int64) for n in inputs
    }
    (out,) = session.run([OUTPUT], feeds)
    return int(np.asarray(out).shape[-1])


def _max_length(run: RunFolder, folder: Path) -> int:
    """The run's data.max_length, else the tokenizer's model_max_length (at most 8192), else 512."""
    try:
        value = run.recipe().get("data", {}).get("max_length")
    except UserError:
        value = None
    if isinstance(value, int) and value > 0:
        return value
    config = folder / "tokenizer_config.json"
    try:
        limit = json.loads(config.read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, ValueError):
        limit = None
    return int(limit) if isinstance(limit, int) and 0 < limit <= 8192 else 512


def _expected(run: RunFolder, step: StepResult, variant: Variant) -> dict[str, Any]:
    """What the run's report measured for this very file: its embedding scores."""
    try:
        report = run.report()
    except UserError as exc:
        return {"why": f"the run's report cannot be read ({exc})"}
    if report is None:
        return {"why": "the run has no report.json (run `compress report`)"}
    for stage in report.get("stages", []):
        if stage.get("step") != step.folder.name or stage.get("variant") != variant.name:
            continue
        if stage.get("artifact_key", step.artifact.key) != step.artifact.key:
            break
        figures = {
            key: value
            for key, value in stage.items()
            if (key in SCORES or key.startswith("neighbour_recall_at_"))
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        }
        test_rows = report.get("method", {}).get("data", {}).get("test_rows")
        measured = f"{test_rows} test rows" if test_rows is not None else None
        return {**figures, "measured_on": measured, "report": str(run.path / "report.json")}
    return {"why": "the run's report did not measure this file"}


def make_embed_bundle(
    run: RunFolder, out: Path, target: str, log: Callable[[str], None] = log.info
) -> Bundle:
    """Write the bundle folder `out` and `out.tar.gz` of the finished embedding run `run`."""
    steps = run.steps()
    step, variant = pick_embed_model(steps, target)
    step.require_unchanged()
    source = step.artifact.file(variant)
    inputs, dim = _graph(source)
    if not (step.folder / "tokenizer.json").is_file():
        raise UserError(f"{step.folder}: no tokenizer.json to ship with the model")
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        shutil.copyfile(source, partial / source.name)
        for extra in _external_data(source):
            (partial / extra).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.parent / extra, partial / extra)
        for name in FILES:
            if (step.folder / name).is_file():
                (partial / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(step.folder / name, partial / name)
        shutil.copyfile(SCRIPT, partial / "embed.py")
        if dim is None:
            dim = _measured_dim(partial / source.name, partial / "tokenizer.json", inputs)
        manifest: dict[str, Any] = {
            "bundle_format": 1,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": str(run.recipe().get("task")),
            "target": target,
            "model": {
                "file": source.name,
                "source": f"{step.folder.name}/{variant.file}",
                "variant": variant.name,
                "precision": variant.precision,
                "for": variant.target,
                "inputs": inputs,
                "output": OUTPUT,
            },
            "max_length": _max_length(run, step.folder),
            "embedding_dim": dim,
            "expected": _expected(run, step, variant),
            "versions": {"compress": __version__, **step.manifest.get("versions", {})},
            "requirements": ["onnxruntime", "tokenizers", "numpy"],
        }
        (partial / "README.md").write_text(_readme(manifest), encoding="utf-8")
        tarball = finish_bundle(partial, out, manifest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = tarball.stat().st_size / 1e6
    log(f"bundle ({variant.precision} {source.name}, dim {dim}) -> {tarball} ({size:.1f} MB)")
    return Bundle(out, tarball, manifest)


def _readme(manifest: dict[str, Any]) -> str:
    model = manifest["model"]
    expected = manifest["expected"]
    figures = ", ".join(
        f"{k.replace('_', ' ')} {v:.4g}"
        for k, v in expected.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    measured = expected.get("measured_on")
    return (
        f"# {model['file']} ({model['precision']}, sentence embeddings)\n\n"
        f"`{model['file']}` is `{model['source']}` of the source run; inputs "
        f"{', '.join(model['inputs'])}; output `{model['output']}` [texts, "
        f"{manifest['embedding_dim']}], L2-normalized.\n\n"
        "Run it:\n\n"
        "    pip install onnxruntime tokenizers numpy\n"
        '    python embed.py --text "a first sentence" "another one"\n'
        "    python embed.py --file texts.txt --out embeddings.npy    # or .jsonl\n\n"
        f"Texts are cut to {manifest['max_length']} tokens. "
        f"Against the original model the run measured: {figures or 'nothing for this file'}"
        f"{' on ' + measured if measured else ''}"
        f"{'' if figures else ' (' + str(expected.get('why')) + ')'}.\n"
        "`manifest.json` holds the sha256 of every file.\n"
    )
