"""`bundle`: package the run's model for one device, with everything needed to run it there.

The bundle is a folder and its `.tar.gz` (in the step folder): the ONNX model
to deploy, the tokenizer or image preprocessing, the label names, scripts
that build the TensorRT engine on the device (`build_engine.py`, with the
builder code compress uses, and the `trtexec` equivalent `build_engine.sh`),
`infer.py`, a README, and `manifest.json` with the sha256 of every file, the
source run, package versions and the accuracy the run's report measured for
that file. The pass runs after the report so that figure is known; see
`compress.bundle` (also `compress bundle RUN_DIR --target ...`).
"""

from __future__ import annotations

from typing import Any

from compress.artifacts import Artifact
from compress.bundle import BundleConfig
from compress.passes.base import PassContext, PassInfo


def apply(artifact: Artifact, cfg: BundleConfig, ctx: PassContext) -> Artifact:
    from compress.bundle import make_bundle
    from compress.errors import UserError

    if ctx.run_dir is None:
        raise UserError("bundle packages a run folder: use it in a recipe or `compress bundle`")
    name = f"{ctx.run_dir.name}-{cfg.target}"
    made = make_bundle(ctx.run_dir, cfg, ctx.work_dir / name, log=ctx.log)
    ctx.metrics["bundle"] = {
        "folder": name,
        "tarball": made.tarball.name,
        "tarball_bytes": made.tarball.stat().st_size,
        "model": made.manifest["model"]["file"],
        "source": made.manifest["model"]["source"],
        "target": cfg.target,
        "expected_accuracy": made.manifest["expected"].get("accuracy"),
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
