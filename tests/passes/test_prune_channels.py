"""`prune_channels` on a small residual CNN and real MNIST digits."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.artifacts import Artifact, Variant
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
    from compress.passkit.training import RecoveryConfig

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
    model, _ = ctx.task.load(str(ctx.work_dir), mnist_slice.label_names)
    assert model.net.stem[0].out_channels == 32 and model.net.block1.body[0].out_channels < 64


def test_pruned_cnn_computes_the_unpruned_one_with_the_lost_channels_zeroed(
    tmp_path: Path, mnist_slice: Dataset
) -> None:
    """The reloaded pruned residual CNN (random batch-norm statistics, no recovery) gives the
    logits of the unpruned one with each lost channel zeroed after its batch norm."""
    from compress.passes.prune_channels import PASS, PruneChannelsConfig
    from compress.vision.folder import offline_model, save
    from tests.vision_archs import masked_channel_reference, randomize_norms

    torch.manual_seed(0)
    model, processor = offline_model("mnist-cnn", mnist_slice.label_names)
    randomize_norms(model.net)
    save(model, processor, tmp_path / "cnn")
    source = Artifact("hf", tmp_path / "cnn", "cnn", [Variant("fp32", "torch", "fp32", "portable")])
    ctx = _ctx(tmp_path, mnist_slice, "exact")
    out = PASS.apply(source, PruneChannelsConfig(ratio=0.5, importance="magnitude"), ctx)
    assert set(ctx.metrics["pruned_layers"]) >= {"net.stem.0", "net.block1.body.0"}
    pruned, _ = ctx.task.load(str(out.path), mnist_slice.label_names)
    original, _ = ctx.task.load(str(source.path), mnist_slice.label_names)
    pixels = torch.from_numpy(processor([mnist_slice.test.inputs[i] for i in range(8)]))
    reference = masked_channel_reference(original, pruned)
    with torch.inference_mode():
        expected = reference(pixels)
        assert not torch.allclose(original(pixels), expected, atol=1e-3)
        assert not torch.allclose(expected[0], expected[1], atol=1e-3)  # images matter
        torch.testing.assert_close(pruned.eval()(pixels), expected, atol=1e-5, rtol=0)
