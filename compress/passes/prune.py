"""`prune`: remove attention heads, FFN neurons and whole layers, so the model really shrinks.

The pruned model is an ordinary Hugging Face folder (`config.pruned_heads`,
`intermediate_size` and `num_hidden_layers` updated) that `from_pretrained`
reloads and that exports to ONNX. Optional recovery distils the pruned model
from the unpruned one on the recipe's training data inside the pass; an
iterative schedule is a recipe that repeats `prune` with a small ratio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from compress.artifacts import Artifact, ModelInfo
from compress.errors import UserError
from compress.passes.base import PassConfig, PassContext, PassInfo, RegexList
from compress.passkit.io import load_input, save_output
from compress.passkit.training import RecoveryConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class PruneConfig(PassConfig):
    """Options of `prune`."""

    heads: float = Field(0.0, ge=0, lt=1, description="share of attention heads to remove")
    ffn: float = Field(0.0, ge=0, lt=1, description="share of FFN neurons to remove per layer")
    layers: int | list[int] | None = Field(
        None,
        description="keep this many layers (evenly picked; text-generation: the ones that "
        "change the hidden states most) or these layer indices",
    )
    importance: Literal["magnitude", "taylor"] = Field(
        "taylor", description="weight magnitude, or gradient-based scores on training data"
    )
    importance_batches: int = Field(16, ge=1, description="training batches for taylor scores")
    targets: RegexList = Field(
        [r".*"], description="regexes of layer names whose heads may be pruned"
    )
    ignore: RegexList = Field([], description="regexes of layer names to leave unpruned heads")
    min_heads: int = Field(1, ge=1, description="heads kept in every layer at least")
    round_to: int = Field(8, ge=1, description="FFN width is rounded to a multiple of this")
    recovery: RecoveryConfig | None = Field(
        None, description="distil from the unpruned model after pruning (e.g. {epochs: 1})"
    )


def _prune_in_place(
    encoder: PreTrainedModel, forward: Any, processor: Any, cfg: PruneConfig, ctx: PassContext
) -> dict[str, Any]:
    """Remove heads and FFN neurons of `encoder` in place; `forward` runs inputs through it
    (the encoder itself, or the image wrapper around a ViT)."""
    from compress.text.pruning import (
        ffn_width,
        heads_to_prune,
        layer_names,
        magnitude_scores,
        prune_ffn,
        remove_heads,
        round_width,
        select_layers,
        taylor_scores,
    )

    report: dict[str, Any] = {}
    if cfg.heads == 0 and cfg.ffn == 0:
        return report
    if cfg.importance == "taylor":
        objective = ctx.objective
        batches = objective.importance_batches(forward, processor, ctx, cfg.importance_batches)
        head_scores, neuron_scores = taylor_scores(
            encoder, batches, forward, objective.importance_loss
        )
    else:
        head_scores, neuron_scores = magnitude_scores(encoder)
    if cfg.heads > 0:
        names = layer_names(encoder)
        chosen = select_layers(names, cfg.targets, cfg.ignore)
        if not chosen:
            raise UserError(f"prune.targets/ignore match no layer (layers: {', '.join(names)})")
        plan = heads_to_prune(head_scores, cfg.heads, chosen, cfg.min_heads)
        remove_heads(encoder, plan)
        report["pruned_heads"] = {str(k): v for k, v in plan.items()}
    if cfg.ffn > 0:
        total = ffn_width(encoder)
        width = round_width(total * (1 - cfg.ffn), cfg.round_to, total)
        prune_ffn(encoder, neuron_scores, width)
        report["ffn_width"] = [total, width]
    return report


def apply(artifact: Artifact, cfg: PruneConfig, ctx: PassContext) -> Artifact:
    from compress.passkit.training import default_device, train
    from compress.text.layers import keep_layers, pick_layers

    own = ctx.own_implementation("prune")
    if own is not None:  # e.g. decoder LMs: layers, FFN neurons and KV groups by activations
        done: Artifact = own(artifact, cfg, ctx)
        return done
    model, processor = load_input(artifact, ctx)
    model.eval().to(default_device())
    objective = ctx.objective
    encoder: PreTrainedModel = ctx.task.inner(model)  # the transformer inside a wrapper
    before_params = sum(p.numel() for p in model.parameters())
    before_macs, what = ctx.task.macs(model, processor, ctx.max_length)
    recovery = None
    if cfg.recovery is not None:  # the unpruned model's outputs, before it changes
        targets = objective.targets(model, processor, ctx.data.train, ctx, "unpruned")
        validate = objective.validator(model, processor, ctx)
        recovery = (targets, validate)
    result: dict[str, Any] = {}
    if cfg.layers is not None:  # a copy with the kept layers
        keep = pick_layers(encoder.config.num_hidden_layers, cfg.layers, "prune.layers")
        encoder = keep_layers(encoder, keep)
        result["kept_layers"] = keep
    pruned: Any = ctx.task.with_inner(model, encoder)
    result.update(_prune_in_place(encoder, pruned, processor, cfg, ctx))
    after_params = sum(p.numel() for p in pruned.parameters())
    after_macs, _ = ctx.task.macs(pruned, processor, ctx.max_length)
    ctx.metrics.update(result)
    ctx.metrics.update(
        parameters=[before_params, after_params],
        flops_ratio=before_macs / after_macs,
        **{ctx.task.macs_key: [before_macs, after_macs]},
    )
    ctx.log(
        f"parameters {before_params / 1e6:.2f}M -> {after_params / 1e6:.2f}M; "
        f"{what} {before_macs / 1e6:.1f}M -> {after_macs / 1e6:.1f}M "
        f"({before_macs / after_macs:.2f}x fewer)"
    )
    if cfg.recovery is not None and recovery is not None:
        targets, validate = recovery
        loss = objective.distillation_loss(targets, cfg.recovery.temperature, cfg.recovery.alpha)
        ctx.metrics["recovery"] = train(
            pruned, processor, cfg.recovery, ctx, loss, "recover", validate=validate
        )
    return save_output(pruned, processor, ctx)


def _check_model(cfg: PruneConfig, info: ModelInfo) -> None:
    from compress.llm import DECODER_TYPES
    from compress.text.adapters import ADAPTERS, HEADS_UNSUPPORTED, unsupported

    if info.model_type in DECODER_TYPES:
        return
    problem = unsupported(info.model_type, "prune")
    if problem is not None:
        raise ValueError(f"{problem}; for CNN image models use prune_channels")
    adapter = ADAPTERS[info.model_type]
    if cfg.heads > 0 and not adapter.prunes_heads:
        raise ValueError(f"heads: {adapter.family} {HEADS_UNSUPPORTED}")


PASS = PassInfo(
    name="prune",
    summary="Remove heads, FFN neurons and layers of transformers (text encoders, ViT); "
    "optional distilled recovery.",
    config=PruneConfig,
    apply=apply,
    consumes="hf",
    produces="hf",
    check_model=_check_model,
    data_parallel=True,
)
