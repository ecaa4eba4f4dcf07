"""The text-embedding task's own implementation of `bundle` (the others are the shared ones).

A sentence embedder's bundle ships its ONNX file with `embed.py`, which embeds
texts or a file of texts with onnxruntime, tokenizers and numpy only (see
`compress.deploy.embed_bundle`).
"""

from __future__ import annotations

from typing import Any

from compress.artifacts import Artifact, RunFolder
from compress.passkit.context import PassContext
from compress.passkit.io import bundle_artifact, bundle_name


def bundle(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """The run's deployable embedding file with `embed.py` and what the report measured."""
    from compress.deploy.embed_bundle import make_embed_bundle

    name = bundle_name(cfg, ctx)
    assert ctx.run_dir is not None  # bundle_name refuses a bundle outside a run
    run = RunFolder(ctx.run_dir).require()
    made = make_embed_bundle(run, ctx.work_dir / name, cfg.target, log=ctx.log)
    return bundle_artifact(made, name, cfg, ctx, {"expected": made.manifest["expected"]})
