"""`distill`: teach a smaller student to imitate the input model (the teacher).

The student is built from the teacher by keeping a subset of its transformer
layers (DistilBERT-style initialization), or loaded from `student`. Loss:
`alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * CE(labels)`, plus an
optional MSE between mapped hidden states. Teacher logits are computed once and
cached unless hidden states are matched (those need the teacher every step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from compress.artifacts import Artifact, ModelInfo
from compress.passes.base import PassContext, PassInfo
from compress.passkit.io import load_input, save_output
from compress.passkit.training import LossFn, TrainConfig, default_device, kd_term, train
from compress.text.layers import keep_layers, pick_layers

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class DistillConfig(TrainConfig):
    """Options of `distill`."""

    epochs: float = Field(2.0, gt=0, le=100, description="passes over the training data")
    lr: float = Field(1e-4, gt=0, lt=1, description="peak learning rate (AdamW)")
    layers: int | list[int] = Field(
        3,
        description="student depth (teacher layers picked evenly) or the teacher layer "
        "indices to keep, e.g. [1, 3, 5]",
    )
    student: str | None = Field(
        None, description="a student model (folder or hub id) instead of one built from layers"
    )
    temperature: float = Field(2.0, gt=0, le=100, description="softmax temperature T")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term")
    hidden_weight: float = Field(0.0, ge=0, description="weight of hidden-state MSE (0: off)")
    examples: Literal["text", "prompted"] = Field(
        "text",
        description="text-generation: distil on the raw texts, or on the prompted, answered "
        "labelled texts",
    )

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be >= 1")
        if isinstance(value, list) and (
            not value or len(set(value)) != len(value) or min(value) < 0
        ):
            raise ValueError("must be distinct, non-negative layer indices")
        return value

    @model_validator(mode="after")
    def _hidden_needs_layer_map(self) -> DistillConfig:
        if self.hidden_weight > 0 and self.student is not None:
            raise ValueError(
                "hidden_weight needs a student built from the teacher's layers; "
                "remove `student` or set hidden_weight: 0"
            )
        return self


def _hidden_state_loss(teacher: PreTrainedModel, keep: list[int], cfg: DistillConfig) -> LossFn:
    """KD + CE + MSE of each student layer against its teacher layer (teacher runs online)."""
    import torch

    pairs = list(enumerate([0, *(i + 1 for i in keep)]))  # embeddings, then each kept layer

    def loss_fn(
        model: PreTrainedModel, batch: dict[str, torch.Tensor], idx: np.ndarray
    ) -> torch.Tensor:
        out = model(**batch, output_hidden_states=True)
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=True)
        loss = cfg.alpha * kd_term(out.logits, t_out.logits, cfg.temperature)
        loss = loss + (1 - cfg.alpha) * out.loss
        mask = batch["attention_mask"].unsqueeze(-1).float()
        denominator = mask.sum() * out.hidden_states[0].shape[-1]
        mse = sum(
            (((out.hidden_states[s] - t_out.hidden_states[k]) ** 2) * mask).sum() / denominator
            for s, k in pairs
        )
        total: torch.Tensor = loss + cfg.hidden_weight * mse / len(pairs)
        return total

    return loss_fn


def apply(artifact: Artifact, cfg: DistillConfig, ctx: PassContext) -> Artifact:
    own = ctx.own_implementation("distill")
    if own is not None:  # e.g. decoder LMs: logits over the vocabulary, validated by perplexity
        result: Artifact = own(artifact, cfg, ctx)
        return result
    teacher, processor = load_input(artifact, ctx)
    teacher.eval().to(default_device())
    teacher_processor = processor
    if cfg.student is not None:
        location = ctx.task.resolve(cfg.student)
        student, processor = ctx.task.load(location, ctx.data.label_names)
        keep = None
    else:
        encoder = ctx.task.inner(teacher)  # the transformer inside a wrapper (ViT, embedder)
        depth = encoder.config.num_hidden_layers
        keep = pick_layers(depth, cfg.layers, "distill.layers")
        student = ctx.task.with_inner(teacher, keep_layers(encoder, keep))
        ctx.log(f"student keeps teacher layers {keep} of {depth}")

    objective = ctx.objective
    validate = objective.validator(teacher, teacher_processor, ctx)
    if cfg.hidden_weight == 0:
        targets = objective.targets(teacher, teacher_processor, ctx.data.train, ctx, "teacher")
        loss_fn = objective.distillation_loss(targets, cfg.temperature, cfg.alpha)
    else:
        assert keep is not None  # the config forbids hidden_weight with a given student
        loss_fn = _hidden_state_loss(teacher, keep, cfg)
    ctx.metrics.update(train(student, processor, cfg, ctx, loss_fn, "distill", validate=validate))
    ctx.metrics["student_layers"] = keep
    ctx.metrics["student_parameters"] = sum(p.numel() for p in student.parameters())
    return save_output(student, processor, ctx)


def _check_model(cfg: DistillConfig, info: ModelInfo) -> None:
    from compress.llm import DECODER_TYPES
    from compress.text.adapters import unsupported

    if info.model_type in DECODER_TYPES:
        return
    problem = unsupported(info.model_type, "distill.layers") if cfg.student is None else None
    if problem is not None:
        raise ValueError(f"{problem}; give `student:` (a model folder or hub id) instead")


PASS = PassInfo(
    name="distill",
    summary="Distil into a smaller student (layer subset of the input, or a given model).",
    config=DistillConfig,
    apply=apply,
    consumes="hf",
    produces="hf",
    check_model=_check_model,
    new_model=lambda cfg: cfg.student,
    data_parallel=True,
)
