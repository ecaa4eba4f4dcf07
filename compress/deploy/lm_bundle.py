"""The deployment bundle of a text-generation run: the ONNX model, its tokenizer, `generate.py`.

The quantized (else the FP32) ONNX export of the run, with its external data,
the tokenizer and the model's configs, a `generate.py` that decodes with the
KV cache on ONNX Runtime (CPU; numpy, onnxruntime and tokenizers only), a
README, and `manifest.json` (sha256 of every file, the context length, the
end-of-text tokens, and what the run's report measured for this file).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress._version import __version__
from compress.artifacts import RunFolder, StepResult, Variant
from compress.deploy.bundle import Bundle, finish_bundle
from compress.errors import UserError

FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)
SCRIPT = Path(__file__).parent / "scripts" / "generate.py"


def pick_lm_model(steps: list[StepResult]) -> tuple[StepResult, Variant]:
    """The last ONNX file of the run (a quantized one is the last when the run quantizes)."""
    for step in reversed(steps):
        for variant in step.artifact.variants:
            if variant.runtime == "onnxruntime" and not step.skipped:
                return step, variant
    raise UserError("the run has no ONNX model to bundle: add export_onnx (and quantize)")


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
    run: RunFolder, out: Path, target: str, log: Callable[[str], None] = print
) -> Bundle:
    steps = run.steps()
    step, variant = pick_lm_model(steps)
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
        (partial / "README.md").write_text(_readme(manifest), encoding="utf-8")
        tarball = finish_bundle(partial, out, manifest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = tarball.stat().st_size / 1e6
    log(f"bundle ({variant.precision} {source.name}) -> {tarball} ({size:.1f} MB)")
    return Bundle(out, tarball, manifest)


def _readme(manifest: dict[str, Any]) -> str:
    expected = manifest["expected"]
    figures = ", ".join(
        f"{k.replace('_', ' ')} {v:.4g}" for k, v in expected.items() if isinstance(v, float)
    )
    return (
        f"# {manifest['model']['file']} ({manifest['model']['precision']})\n\n"
        "Run it on a CPU:\n\n"
        "    pip install onnxruntime tokenizers numpy\n"
        '    python generate.py "The capital of France is" --max-new-tokens 32\n'
        '    python generate.py --chat "Write a haiku about the sea."  # needs jinja2\n\n'
        f"Context: {manifest['context_length']} tokens (prompt plus new tokens). "
        f"The run measured: {figures or 'nothing for this file'}"
        f"{' on ' + expected['measured_on'] if expected.get('measured_on') else ''}.\n"
        "`manifest.json` holds the sha256 of every file.\n"
    )
