"""`prune_channels` on a small residual CNN and real MNIST digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.artifacts import Artifact
from compress.data import Dataset
from compress.passes.base import PassContext
from compress.tasks import get_task

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")


def _ctx(tmp_path: Path, data: Dataset, name: str) -> PassContext:
    work = tmp_path / name
    work.mkdir()
    task = get_task("image-classification")
    return PassContext(work, data, max_length=32, seed=0, key=name, progress=False, task=task)


def test_prune_channels_shrinks_and_reloads(
    tmp_path: Path, mnist_slice: Dataset, cnn_artifact: Artifact
) -> None:
    from compress.passes.prune_channels import PASS, PruneChannelsConfig
    from compress.passes.training import RecoveryConfig

    ctx = _ctx(tmp_path, mnist_slice, "prune")
    cfg = PruneChannelsConfig(
        ratio=0.5, importance="taylor", importance_batches=2, recovery=RecoveryConfig(epochs=0.2)
    )
    out = PASS.apply(cnn_artifact, cfg, ctx)
    before, after = ctx.metrics["parameters"]
    assert after < before / 2 and ctx.metrics["flops_ratio"] > 2.5
    assert ctx.metrics["recovery"]["steps"] >= 1
    model, _ = ctx.task.load(str(out.path), mnist_slice.label_names)
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and max(widths) <= 64


def test_ignored_layers_keep_their_width(
    tmp_path: Path, mnist_slice: Dataset, cnn_artifact: Artifact
) -> None:
    from compress.passes.prune_channels import PASS, PruneChannelsConfig

    ctx = _ctx(tmp_path, mnist_slice, "ignore")
    cfg = PruneChannelsConfig(ratio=0.5, importance="magnitude", ignore=[r"net\.stem\.0"])
    PASS.apply(cnn_artifact, cfg, ctx)
    pruned = ctx.metrics["pruned_layers"]
    assert pruned and "net.stem.0" not in pruned  # left alone, while the others narrowed
