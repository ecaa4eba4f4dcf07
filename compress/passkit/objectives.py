"""What the shared passes train and score models on, per kind of output.

`LOGITS` serves classifiers (text and image): cross-entropy on the labels,
Hinton's distillation on cached teacher logits, validation accuracy.
`EMBEDDINGS` serves sentence embedders: the student's sentence vector must
match the teacher's (cosine distance, as in Reimers & Gurevych 2020, no
labels needed), pruning ranks heads and neurons by an in-batch contrastive
loss against the unpruned model's vectors (a plain distance has no gradient
while the two models are still equal), and validation is the mean cosine to
the teacher. A task names its objective in its table (`Task.objective`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.data import Split
from compress.passkit.context import PassContext
from compress.passkit.training import (
    LossFn,
    Validator,
    cross_entropy,
    distillation_loss_fn,
    forward_logits,
    predict_logits,
    split_logits,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    import torch

    # what a file is scored against: the float file it came from, or the float model's outputs
    Reference: TypeAlias = Path | torch.Tensor | None


class LogitsObjective:
    """Classifiers: labels, logits, accuracy."""

    metric = "accuracy"
    supervised = True
    scores_against_float = False  # a file is scored on the labels

    def outputs(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return forward_logits(model, dict(batch))

    def targets(
        self, model: Any, processor: Any, split: Split, ctx: PassContext, desc: str
    ) -> torch.Tensor:
        import torch

        return torch.as_tensor(split_logits(model, processor, split, ctx, desc))

    def supervised_loss(self) -> LossFn:
        return cross_entropy

    def distillation_loss(self, targets: torch.Tensor, temperature: float, alpha: float) -> LossFn:
        return distillation_loss_fn(targets, temperature, alpha)

    def importance_batches(
        self, model: Any, processor: Any, ctx: PassContext, count: int
    ) -> list[dict[str, Any]]:
        from compress.passkit.io import labelled_batches

        return labelled_batches(processor, ctx, count)

    def importance_loss(self, output: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        import torch.nn.functional as F

        logits: torch.Tensor = getattr(output, "logits", output)
        return F.cross_entropy(logits, batch["labels"].to(logits.device))

    def validator(self, teacher: Any, processor: Any, ctx: PassContext) -> Validator:
        from compress.benchmark.evaluate import accuracy

        encoded = ctx.task.encode(processor, ctx.data.validation.inputs, ctx.max_length)

        def validate(model: Any) -> tuple[float, dict[str, float]]:
            logits = predict_logits(model, processor, encoded, ctx.task)
            value = accuracy(ctx.data.validation.labels, logits.argmax(-1))
            return value, {"val_accuracy": value}

        return validate

    def score_file(
        self, ctx: PassContext, processor: Any, file: Path, exact: bool, reference: Reference
    ) -> float:
        from compress.passkit.io import onnx_validation_accuracy

        return onnx_validation_accuracy(ctx, processor, file, exact=exact)


def embeddings_of(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A sentence embedder's vectors for `batch` (the keys it does not take are dropped)."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "targets")}
    out: torch.Tensor = model(**inputs)
    return out


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cosine) between matching rows."""
    import torch.nn.functional as F

    return (1 - F.cosine_similarity(student, teacher.to(student.device), dim=-1)).mean()


class EmbeddingObjective:
    """Sentence embedders: match the teacher's vectors; no labels needed."""

    metric = "cosine"
    supervised = False
    scores_against_float = True  # a file is scored by cosine to the float model's vectors
    contrast_temperature = 0.05  # sharp enough that near neighbours compete, as in SimCSE

    def outputs(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return embeddings_of(model, batch)

    def targets(
        self, model: Any, processor: Any, split: Split, ctx: PassContext, desc: str
    ) -> torch.Tensor:
        import torch

        encoded = ctx.task.encode(processor, split.inputs, ctx.max_length)
        vectors = predict_logits(
            model,
            processor,
            encoded,
            ctx.task,
            progress=ctx.progress,
            desc=desc,
            forward=embeddings_of,
        )
        return torch.as_tensor(vectors)

    def supervised_loss(self) -> LossFn:
        raise ValueError("sentence embedders have no supervised loss here: distil instead")

    def distillation_loss(self, targets: torch.Tensor, temperature: float, alpha: float) -> LossFn:
        def loss_fn(model: Any, batch: dict[str, torch.Tensor], idx: np.ndarray) -> torch.Tensor:
            return cosine_distance(embeddings_of(model, batch), targets[idx])

        return loss_fn

    def importance_batches(
        self, model: Any, processor: Any, ctx: PassContext, count: int
    ) -> list[dict[str, Any]]:
        import torch

        from compress.data.batches import bucketed_batches

        encoded = ctx.task.encode(processor, ctx.data.train.inputs, ctx.max_length)
        order = bucketed_batches(ctx.task.lengths(encoded), 32, np.random.default_rng(ctx.seed))
        batches = []
        device = next(model.parameters()).device
        for idx in order[:count]:
            batch = ctx.task.collate(processor, encoded, idx)
            with torch.inference_mode():
                moved = {k: v.to(device) for k, v in batch.items()}
                targets = embeddings_of(model, moved).detach().clone()
            batches.append({**batch, "targets": targets})
        return batches

    def importance_loss(self, output: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        student = F.normalize(output, dim=-1)
        teacher = F.normalize(batch["targets"].to(output.device), dim=-1)
        similarity = student @ teacher.T / self.contrast_temperature
        return F.cross_entropy(similarity, torch.arange(len(student), device=output.device))

    def validator(self, teacher: Any, processor: Any, ctx: PassContext) -> Validator:
        import torch.nn.functional as F

        if teacher is None:
            raise ValueError("a sentence embedder is validated against its teacher's vectors")
        split = ctx.data.validation
        reference = self.targets(teacher, processor, split, ctx, "teacher validation")

        def validate(model: Any) -> tuple[float, dict[str, float]]:
            import torch

            was_training = model.training
            mine = self.targets(model, processor, split, dataclass_quiet(ctx), "validate")
            model.train(was_training)
            cosine = F.cosine_similarity(mine, reference, dim=-1)
            value = float(cosine.mean())
            return value, {
                "val_cosine": value,
                "val_cosine_p5": float(torch.quantile(cosine, 0.05)),
            }

        return validate

    def score_file(
        self, ctx: PassContext, processor: Any, file: Path, exact: bool, reference: Reference
    ) -> float:
        """Mean cosine of the file's validation vectors to the float model's: `reference` is
        its float ONNX file, or that model's validation vectors."""
        from compress.benchmark.evaluate import runtime_outputs
        from compress.benchmark.runtimes import OrtRuntime

        if reference is None:
            raise ValueError("an embedding file is scored against the float file it came from")
        split = ctx.data.validation
        encoded = ctx.task.encode(processor, split.inputs, ctx.max_length)
        vectors = []
        runs: list[tuple[Path, bool]] = [(file, exact)]
        if isinstance(reference, Path):
            runs.append((reference, False))
        for path, how in runs:
            runtime = OrtRuntime(path, threads=0, exact=how)
            try:
                vectors.append(runtime_outputs(runtime, processor, encoded, ctx.task, desc="score"))
            finally:
                runtime.close()
        if not isinstance(reference, Path):
            vectors.append(np.asarray(reference, dtype=np.float32))
        a, b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors)
        value = float((a * b).sum(1).mean())
        note = ", Q/DQ executed exactly" if exact else ""
        ctx.log(f"{file.name}: validation cosine to the float model {value:.4f}{note}")
        return value


def dataclass_quiet(ctx: PassContext) -> PassContext:
    """`ctx` without progress bars (validation inside a training loop)."""
    import dataclasses

    return dataclasses.replace(ctx, progress=False)


LOGITS = LogitsObjective()
EMBEDDINGS = EmbeddingObjective()
