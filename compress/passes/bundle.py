"""`bundle`: package the run's model for one device, with everything needed to run it there.

The bundle is a folder and its `.tar.gz` (in the step folder): the ONNX model
to deploy, the tokenizer or image preprocessing, the label names, scripts
that build the TensorRT engine on the device (`build_engine.py`, with the
builder code compress uses, and the `trtexec` equivalent `build_engine.sh`),
`infer.py`, a README, and `manifest.json` with the sha256 of every file, the
source run, package versions and the accuracy the run's report measured for
that file. The pass runs after the report so that figure is known; see
`compress.deploy.bundle` (also `compress bundle RUN_DIR --target ...`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from compress.artifacts import Artifact, RunFolder
from compress.deploy.bundle import Bundle, BundleSpec, make_bundle
from compress.deploy.devices import DEVICE_NAMES, get_device
from compress.errors import UserError
from compress.passes.base import PassConfig, PassContext, PassInfo
from compress.trt.options import EngineShapes


class BundleConfig(PassConfig, EngineShapes):
    """Options of `bundle` (and of `compress bundle`)."""

    target: str = Field(..., description=f"the device: {', '.join(DEVICE_NAMES)}")
    model: Literal["auto", "tensorrt", "cpu", "fp32"] = Field(
        "auto",
        description="ONNX file to ship; auto: the TensorRT INT8 Q/DQ file on GPU targets (the "
        "CPU INT8 file on x86-cpu), else the FP32 export",
    )
    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto", description="engine precision; auto: int8 for a Q/DQ model, else fp16 on GPUs"
    )
    workspace_mb: int | None = Field(
        None, ge=16, description="engine builder workspace; default: the target's"
    )

    @field_validator("target")
    @classmethod
    def _known_device(cls, value: str) -> str:
        try:
            get_device(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        return value


def package(
    run_dir: Path, cfg: BundleConfig, out: Path, log: Callable[[str], None] = print
) -> Bundle:
    """Write the bundle of the finished run in `run_dir` to `out` (and `out.tar.gz`)."""
    spec = BundleSpec(
        device=get_device(cfg.target),
        model=cfg.model,
        precision=cfg.precision,
        shapes=EngineShapes(batch=cfg.batch, sequence=cfg.sequence),
        workspace_mb=cfg.workspace_mb,
    )
    return make_bundle(RunFolder(run_dir).require(), out, spec, log=log)


def apply(artifact: Artifact, cfg: BundleConfig, ctx: PassContext) -> Artifact:
    if ctx.run_dir is None:
        raise UserError("bundle packages a run folder: use it in a recipe or `compress bundle`")
    name = f"{ctx.run_dir.name}-{cfg.target}"
    expected: dict[str, Any]
    if ctx.task.name == "text-generation":
        from compress.deploy.lm_bundle import make_lm_bundle

        made = make_lm_bundle(RunFolder(ctx.run_dir).require(), ctx.work_dir / name, cfg.target)
        expected = {"expected": made.manifest["expected"]}
    else:
        made = package(ctx.run_dir, cfg, ctx.work_dir / name, log=ctx.log)
        expected = {"expected_accuracy": made.manifest["expected"].get("accuracy")}
    ctx.metrics["bundle"] = {
        "folder": name,
        "tarball": made.tarball.name,
        "tarball_bytes": made.tarball.stat().st_size,
        "model": made.manifest["model"]["file"],
        "source": made.manifest["model"]["source"],
        "target": cfg.target,
        **expected,
    }
    meta: dict[str, Any] = {"bundle": ctx.metrics["bundle"]}
    return Artifact("bundle", ctx.work_dir, ctx.key, [], meta)


PASS = PassInfo(
    name="bundle",
    summary="Package the model for a device: ONNX, preprocessing, engine build scripts, infer.py.",
    config=BundleConfig,
    apply=apply,
    consumes=("onnx", "engine", "bundle"),
    produces="bundle",
    after_report=True,
)
