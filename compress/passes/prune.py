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
from compress.passes.common import labelled_batches, load_input, save_output
from compress.passes.training import RecoveryConfig

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
        batches = labelled_batches(processor, ctx, cfg.importance_batches)
        head_scores, neuron_scores = taylor_scores(encoder, batches, forward)
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


def _prune_lm(model: Any, tokenizer: Any, cfg: PruneConfig, ctx: PassContext) -> Artifact:
    """Depth (least-influential layers) and width (FFN neurons, KV groups) of a decoder LM."""
    import copy

    from compress.llm import pruning
    from compress.llm.models import lm_meta
    from compress.passes.lm_common import text_batches
    from compress.text.pruning import round_width

    teacher = copy.deepcopy(model) if cfg.recovery is not None else None
    before = lm_meta(model)
    batches = text_batches(tokenizer, ctx, cfg.importance_batches)
    result: dict[str, Any] = {}
    if cfg.layers is not None:
        depth = model.config.num_hidden_layers
        if isinstance(cfg.layers, int):
            if not 1 <= cfg.layers <= depth:
                raise UserError(f"prune.layers: {cfg.layers} layers asked, the model has {depth}")
            influence = pruning.layer_influence(model, batches)
            keep = sorted(sorted(range(depth), key=lambda i: -influence[i])[: cfg.layers])
            result["layer_influence"] = [round(v, 5) for v in influence]
        else:
            keep = sorted(cfg.layers)
            if keep[-1] >= depth:
                raise UserError(f"prune.layers: layer {keep[-1]} asked, the model has {depth}")
        pruning.drop_layers(model, keep)
        result["kept_layers"] = keep
        ctx.log(f"keeping {len(keep)} of {depth} layers: {keep}")
    if cfg.heads > 0 or cfg.ffn > 0:
        ffn_scores, group_scores = pruning.width_scores(model, batches)
        if cfg.ffn > 0:
            total = model.config.intermediate_size
            width = round_width(total * (1 - cfg.ffn), cfg.round_to, total)
            pruning.prune_ffn(model, ffn_scores, width)
            result["ffn_width"] = [total, width]
        if cfg.heads > 0:
            groups = model.config.num_key_value_heads
            kept = max(1, groups - round(cfg.heads * groups))
            if kept == groups:
                raise UserError(
                    f"prune.heads: {cfg.heads:g} of {groups} key/value groups rounds to none; "
                    f"heads are removed in whole groups (at least {1 / groups:.3g})"
                )
            pruning.prune_kv_groups(model, group_scores, kept)
            result["kv_groups"] = [groups, kept]
    after = lm_meta(model)
    ctx.metrics.update(result)
    ctx.metrics["parameters"] = [before["parameters"], after["parameters"]]
    ctx.log(f"parameters {before['parameters'] / 1e6:.1f}M -> {after['parameters'] / 1e6:.1f}M")
    if cfg.recovery is not None and teacher is not None:
        from compress.llm.losses import lm_distillation_loss
        from compress.passes.lm_common import train_lm

        loss = lm_distillation_loss(teacher, cfg.recovery.temperature, cfg.recovery.alpha)
        examples = cfg.recovery.examples or "text"
        ctx.metrics["recovery"] = train_lm(
            model, tokenizer, cfg.recovery, ctx, loss, "recover", examples
        )
    return save_output(model, tokenizer, ctx)


def apply(artifact: Artifact, cfg: PruneConfig, ctx: PassContext) -> Artifact:
    import torch

    from compress.passes.training import default_device, recover, split_logits
    from compress.text.layers import keep_layers, pick_layers

    model, processor = load_input(artifact, ctx)
    if ctx.task.name == "text-generation":
        return _prune_lm(model, processor, cfg, ctx)
    model.eval().to(default_device())
    image = ctx.task.input_kind == "images"
    encoder: PreTrainedModel = model.net if image else model  # a ViT inside its image wrapper
    before_params = sum(p.numel() for p in model.parameters())
    before_macs = _macs(model, processor, ctx)
    teacher_logits = None
    if cfg.recovery is not None:
        logits = split_logits(model, processor, ctx.data.train, ctx, "unpruned")
        teacher_logits = torch.as_tensor(logits)
    result: dict[str, Any] = {}
    if cfg.layers is not None:  # a copy with the kept layers; an image wrapper takes the copy
        keep = pick_layers(encoder.config.num_hidden_layers, cfg.layers, "prune.layers")
        encoder = keep_layers(encoder, keep)
        result["kept_layers"] = keep
    if image:
        model.net = encoder
    pruned: Any = model if image else encoder
    result.update(_prune_in_place(encoder, pruned, processor, cfg, ctx))
    after_params = sum(p.numel() for p in pruned.parameters())
    after_macs = _macs(pruned, processor, ctx)
    what = "MACs per image" if image else "encoder matmul MACs/token"
    ctx.metrics.update(result)
    ctx.metrics.update(
        parameters=[before_params, after_params],
        flops_ratio=before_macs / after_macs,
        **{"macs_per_example" if image else "matmul_macs_per_token": [before_macs, after_macs]},
    )
    ctx.log(
        f"parameters {before_params / 1e6:.2f}M -> {after_params / 1e6:.2f}M; "
        f"{what} {before_macs / 1e6:.1f}M -> {after_macs / 1e6:.1f}M "
        f"({before_macs / after_macs:.2f}x fewer)"
    )
    recover(pruned, processor, cfg.recovery, teacher_logits, ctx)
    return save_output(pruned, processor, ctx)


def _macs(model: Any, processor: Any, ctx: PassContext) -> int:
    if ctx.task.input_kind == "images":
        from compress.vision.pruning import count_macs

        return count_macs(model, processor)
    from compress.text.pruning import linear_flops_per_token

    return linear_flops_per_token(model, ctx.max_length)


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


def _check(cfg: PruneConfig, task: str) -> None:
    if task != "text-generation":
        if cfg.recovery is not None and cfg.recovery.examples is not None:
            raise ValueError("recovery.examples is a text-generation option; remove it")
        return
    for name in cfg.changed(("importance", "targets", "ignore", "min_heads")):
        raise ValueError(
            f"{name}: text-generation prunes by activations on the training texts, in "
            "whole key/value groups in every layer; remove it"
        )


PASS = PassInfo(
    name="prune",
    summary="Remove heads, FFN neurons and layers of transformers (text encoders, ViT); "
    "optional distilled recovery.",
    config=PruneConfig,
    apply=apply,
    consumes="hf",
    produces="hf",
    check=_check,
    check_model=_check_model,
    data_parallel=True,
)
