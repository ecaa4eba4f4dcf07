"""`fine_tune`: train the model on the recipe's data, fully or with LoRA.

LoRA adapters (peft) are merged into the weights before the model is saved,
so every later pass and export sees a plain Hugging Face model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from compress.artifacts import Artifact
from compress.errors import UserError
from compress.passes.base import PassContext, PassInfo
from compress.passkit.io import load_input, save_output
from compress.passkit.training import TrainConfig, train


class FineTuneConfig(TrainConfig):
    """Options of `fine_tune`."""

    method: Literal["full", "lora"] = Field("full", description="train all weights, or LoRA")
    lora_r: int = Field(8, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling numerator")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on LoRA inputs")
    lora_targets: list[str] | None = Field(
        None,
        min_length=1,
        description="module names (or regexes) given adapters; default: the attention query "
        "and value projections of the architecture",
    )
    min_steps: int = Field(
        300,
        ge=0,
        description="train at least this many optimizer steps (more epochs on a small dataset)",
    )
    examples: Literal["text", "prompted"] = Field(
        "text",
        description="text-generation: train on the raw texts, or on each labelled text in the "
        "task's prompt followed by its label word",
    )


def apply(artifact: Artifact, cfg: FineTuneConfig, ctx: PassContext) -> Artifact:
    own = ctx.own_implementation("fine_tune")
    if own is not None:  # e.g. decoder LMs: next-token loss, validated by perplexity
        result: Artifact = own(artifact, cfg, ctx)
        return result
    model, processor = load_input(artifact, ctx)
    loss = ctx.objective.supervised_loss()
    if cfg.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        from compress.text.adapters import lora_targets

        # the classification head (every child with weights but the encoder) is new: train it
        head = [
            n
            for n, m in model.named_children()
            if n != model.base_model_prefix and any(True for _ in m.parameters())
        ]
        lora = LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_targets or lora_targets(model.config.model_type),
            modules_to_save=head,
        )
        try:
            peft_model: Any = get_peft_model(model, lora)
        except ValueError as exc:  # no default targets for this architecture, or none matched
            raise UserError(f"fine_tune LoRA on {model.config.model_type}: {exc}") from None
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        ctx.log(f"LoRA: {trainable:,} trainable parameters")
        metrics = train(peft_model, processor, cfg, ctx, loss, "fine_tune", cfg.min_steps)
        model = peft_model.merge_and_unload()
    else:
        metrics = train(model, processor, cfg, ctx, loss, "fine_tune", cfg.min_steps)
    ctx.metrics.update(metrics)
    if "best_val_accuracy" in metrics:  # a classifier: did it beat the commonest label?
        ctx.metrics["learned"] = _learned(metrics, ctx, cfg)
    return save_output(model, processor, ctx)


def _learned(metrics: dict[str, Any], ctx: PassContext, cfg: FineTuneConfig) -> dict[str, Any]:
    """Whether the model beats always predicting the commonest validation label; if not,
    say so now and what to change, before later passes compress a model that learned nothing."""
    from compress.benchmark.sanity import majority_baseline

    majority = majority_baseline(ctx.data.validation.labels, [])["accuracy"]
    best = float(metrics["best_val_accuracy"])
    learned = best > majority + 1e-9
    if not learned:
        ctx.log(
            f"WARNING fine_tune: best validation accuracy {best:.4f} is no better than always "
            f"predicting the commonest label ({majority:.4f}) after {metrics['steps']} steps: "
            f"the model has not learned the task. Train longer (epochs, now {cfg.epochs:g}; "
            f"min_steps, now {cfg.min_steps}) or with a higher lr (now {cfg.lr:g}), "
            "or check the labels."
        )
    return {"learned": learned, "majority_class_val_accuracy": majority}


PASS = PassInfo(
    name="fine_tune",
    summary="Fine-tune on the recipe's data (full or LoRA, merged); keeps the best epoch.",
    config=FineTuneConfig,
    apply=apply,
    consumes="hf",
    produces="hf",
    data_parallel=True,
    compresses=False,  # it adapts the model to the task: its output is the report's original
)
