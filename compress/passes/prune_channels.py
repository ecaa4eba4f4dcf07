"""`prune_channels`: remove convolution channels of a CNN, so the model really shrinks.

torch-pruning's dependency graph prunes coupled layers together (residual
sums, depthwise convolutions, batch norms), widths are rounded to a multiple
of `round_to`, and the classifier keeps its outputs. The result is an
ordinary image model folder that reloads at its new widths and exports to
ONNX. Optional recovery distils it from the unpruned model inside the pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compress.artifacts import Artifact, ModelInfo
from compress.passes.base import PassConfig, PassContext, PassInfo, RegexList
from compress.passkit.io import labelled_batches, load_input, save_output
from compress.passkit.training import RecoveryConfig


class PruneChannelsConfig(PassConfig):
    """Options of `prune_channels`."""

    ratio: float = Field(0.3, gt=0, lt=1, description="share of channels to remove")
    importance: Literal["magnitude", "taylor", "bn_scale"] = Field(
        "taylor",
        description="L2 weight magnitude, gradient x weight on training data, or BN scale",
    )
    importance_batches: int = Field(8, ge=1, description="training batches for taylor scores")
    global_pruning: bool = Field(
        False, description="rank channels across layers (else the same ratio in every layer)"
    )
    round_to: int = Field(8, ge=1, description="channel counts rounded to a multiple of this")
    ignore: RegexList = Field([], description="regexes of module names left unpruned")
    recovery: RecoveryConfig | None = Field(
        None, description="distil from the unpruned model after pruning (e.g. {epochs: 1})"
    )


def apply(artifact: Artifact, cfg: PruneChannelsConfig, ctx: PassContext) -> Artifact:
    import torch

    from compress.passkit.training import default_device, recover, split_logits
    from compress.vision.pruning import count_macs, prune_channels

    model, processor = load_input(artifact, ctx)
    model.eval().to(default_device())
    teacher_logits = None
    if cfg.recovery is not None:
        teacher_logits = torch.as_tensor(
            split_logits(model, processor, ctx.data.train, ctx, "unpruned")
        )
    calibration = None
    if cfg.importance == "taylor":
        calibration = labelled_batches(processor, ctx, cfg.importance_batches)
    before_params = sum(p.numel() for p in model.parameters())
    before_macs = count_macs(model, processor)
    changed = prune_channels(
        model,
        processor,
        cfg.ratio,
        cfg.importance,
        cfg.round_to,
        cfg.ignore,
        cfg.global_pruning,
        calibration,
    )
    after_params = sum(p.numel() for p in model.parameters())
    after_macs = count_macs(model, processor)
    ctx.metrics.update(
        changed,
        parameters=[before_params, after_params],
        macs_per_example=[before_macs, after_macs],
        flops_ratio=before_macs / after_macs,
    )
    ctx.log(
        f"parameters {before_params / 1e6:.2f}M -> {after_params / 1e6:.2f}M; MACs/image "
        f"{before_macs / 1e6:.1f}M -> {after_macs / 1e6:.1f}M "
        f"({before_macs / after_macs:.2f}x fewer); {len(changed['pruned_layers'])} convs narrowed"
    )
    recover(model, processor, cfg.recovery, teacher_logits, ctx)
    return save_output(model, processor, ctx)


CNNS = ("mnist-cnn", "efficientnet-lite0", "resnet", "mobilenet_v2")  # checked to reload


def _check_model(cfg: PruneChannelsConfig, info: ModelInfo) -> None:
    if info.model_type not in CNNS:
        hint = "; for ViT use prune (heads, ffn, layers)" if info.model_type == "vit" else ""
        raise ValueError(
            f"prune_channels does not support '{info.model_type}' (supported: "
            f"{', '.join(CNNS)}){hint}"
        )


PASS = PassInfo(
    name="prune_channels",
    summary="Remove conv channels of CNNs (torch-pruning, dependency-aware); optional recovery.",
    config=PruneChannelsConfig,
    apply=apply,
    consumes="hf",
    produces="hf",
    requires=(("torch_pruning", "pip install torch-pruning==1.6.1"),),
    check_model=_check_model,
    data_parallel=True,
)
