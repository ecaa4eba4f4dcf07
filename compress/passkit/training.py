"""The training loop shared by the passes that train (fine_tune, distill).

AdamW with linear warm-up and decay, length-bucketed batches, validation
accuracy after every epoch, and the best epoch's weights kept. It runs under
`accelerate`, so the same code trains on CPU, one GPU, or several processes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from compress.benchmark.evaluate import accuracy, predict
from compress.data import Split
from compress.data.batches import bucketed_batches
from compress.passkit.context import PassConfig, PassContext
from compress.tasks import Task
from compress.tasks.base import logits_of

if TYPE_CHECKING:
    import torch

LossFn = Callable[[Any, dict[str, "torch.Tensor"], np.ndarray], "torch.Tensor"]
"""`loss_fn(model, batch, indices)`: `batch` holds the model inputs and `labels`."""

Validator = Callable[[Any], tuple[float, dict[str, float]]]
"""`validate(model)` after each epoch: (score, higher is better; the epoch's named figures)."""


class TrainConfig(PassConfig):
    """Options shared by every pass that trains."""

    epochs: float = Field(1.0, gt=0, le=100, description="passes over the training data")
    batch_size: int = Field(32, ge=1, le=4096, description="examples per step")
    lr: float = Field(5e-5, gt=0, lt=1, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, lt=1, description="AdamW weight decay")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    keep_best: bool = Field(True, description="keep the epoch with the best validation accuracy")


class RecoveryConfig(TrainConfig):
    """Distillation from the unpruned model after pruning."""

    lr: float = Field(1e-4, gt=0, lt=1, description="peak learning rate (AdamW)")
    temperature: float = Field(2.0, gt=0, le=100, description="softmax temperature T")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the distillation term")
    examples: Literal["text", "prompted"] | None = Field(
        None,
        description="text-generation: train on the raw texts (default) or on the prompted, "
        "answered labelled texts",
    )


def recover(
    model: Any,
    processor: Any,
    recovery: RecoveryConfig | None,
    teacher_logits: torch.Tensor | None,
    ctx: PassContext,
) -> None:
    """A pruning pass's `recovery`: distil the pruned model from the unpruned one's logits."""
    if recovery is None or teacher_logits is None:
        return
    loss = distillation_loss_fn(teacher_logits, recovery.temperature, recovery.alpha)
    ctx.metrics["recovery"] = train(model, processor, recovery, ctx, loss, "recover")


def default_device() -> torch.device:
    """Where single-process work (teacher logits, importance scores) runs: CUDA if present."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def kd_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation term: T^2 * KL(softmax(teacher/T) || softmax(student/T))."""
    import torch.nn.functional as F

    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean")
    return kl * (t * t)


def forward_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's logits for `batch` (its `labels`, if any, are not passed to the model)."""
    return logits_of(model(**{k: v for k, v in batch.items() if k != "labels"}))


def cross_entropy(model: Any, batch: dict[str, torch.Tensor], _: np.ndarray) -> torch.Tensor:
    """Plain cross-entropy against the batch's labels."""
    import torch.nn.functional as F

    return F.cross_entropy(forward_logits(model, batch), batch["labels"])


def distillation_loss_fn(teacher_logits: torch.Tensor, temperature: float, alpha: float) -> LossFn:
    """A loss `alpha * kd_term + (1 - alpha) * CE` against cached teacher logits (by row index)."""
    import torch.nn.functional as F

    def loss_fn(model: Any, batch: dict[str, torch.Tensor], idx: np.ndarray) -> torch.Tensor:
        logits = forward_logits(model, batch)
        soft = kd_term(logits, teacher_logits[idx].to(logits.device), temperature)
        if alpha >= 1:
            return soft
        total: torch.Tensor = alpha * soft + (1 - alpha) * F.cross_entropy(logits, batch["labels"])
        return total

    return loss_fn


def predict_logits(
    model: Any,
    processor: Any,
    encoded: Any,
    task: Task,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "predict",
    forward: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor] | None = None,
) -> np.ndarray:
    """Logits (or what `forward(model, batch)` returns) of a PyTorch model for every encoded
    example, in input order."""
    import torch

    model.eval()
    device = next(model.parameters()).device

    def fn(batch: dict[str, torch.Tensor]) -> np.ndarray:
        with torch.inference_mode():
            moved = {k: v.to(device) for k, v in batch.items()}
            return np.asarray((forward or forward_logits)(model, moved).float().cpu().numpy())

    return predict(fn, processor, encoded, task, batch_size, progress, desc)


def split_logits(
    model: Any, processor: Any, split: Split, ctx: PassContext, desc: str = "predict"
) -> np.ndarray:
    """Logits of `model` for every example of `split` (e.g. a teacher's, for distillation)."""
    encoded = ctx.task.encode(processor, split.inputs, ctx.max_length)
    return predict_logits(model, processor, encoded, ctx.task, progress=ctx.progress, desc=desc)


def split_accuracy(model: Any, processor: Any, split: Split, task: Task, max_length: int) -> float:
    """Accuracy of a PyTorch model on `split`."""
    encoded = task.encode(processor, split.inputs, max_length)
    return accuracy(split.labels, predict_logits(model, processor, encoded, task).argmax(-1))


def shard(batches: list[np.ndarray], index: int, count: int) -> list[np.ndarray]:
    """Process `index`'s share of `batches` when `count` processes train together.

    Every process gets the same number of batches (the list is padded by
    repeating its first batches, as torch's DistributedSampler does): a process
    with one batch more would wait forever for the others' gradients.

    >>> [b.tolist() for b in shard([np.array([i]) for i in range(5)], 1, 2)]
    [[1], [3], [0]]
    """
    if count == 1:
        return batches
    padded = batches + batches[: -len(batches) % count]
    return padded[index::count]


def train(
    model: Any,
    processor: Any,
    cfg: TrainConfig,
    ctx: PassContext,
    loss_fn: LossFn,
    desc: str,
    min_steps: int = 0,
    validate: Validator | None = None,
) -> dict[str, Any]:
    """Train `model` in place on `ctx.data.train`; returns per-epoch metrics.

    `validate` scores each epoch (default: the task's objective, e.g. validation
    accuracy); the best
    epoch's figures are returned as `best_<name>`.

    At least `min_steps` optimizer steps run (more epochs than `cfg.epochs` on
    a small dataset), so a few hundred rows still train the model.

    `loss_fn(model, batch, indices)` gets the padded batch (with `labels`) and
    the training-set indices of its rows, so it can look up cached targets.
    """
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(ctx.seed)
    rng = np.random.default_rng(ctx.seed)
    # total_steps already counts steps of every process together: the schedule steps once per
    # step (accelerate would step it once per process, decaying the lr that many times faster)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False
    )
    task = ctx.task
    train_split = ctx.data.train
    encoded = task.encode(processor, train_split.inputs, ctx.max_length)
    if validate is None:  # the task's validation figure (classifiers: accuracy)
        validate = ctx.objective.validator(None, processor, ctx)

    lengths = task.lengths(encoded)
    labels = torch.as_tensor(train_split.labels)
    labelled = len(labels) == len(encoded)  # texts without labels (sentence embedders) train too

    steps_per_epoch = -(-len(encoded) // (cfg.batch_size * accelerator.num_processes))
    total_steps = max(1, round(steps_per_epoch * cfg.epochs))
    if total_steps < min_steps:
        ctx.log(
            f"{desc}: {total_steps} steps for {cfg.epochs:g} epoch(s) of {len(encoded)} rows; "
            f"training {min_steps} steps ({min_steps / steps_per_epoch:.1f} epochs, min_steps)"
        )
        total_steps = min_steps
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            is_plain = param.ndim < 2 or "LayerNorm" in name or name.endswith("bias")  # + BN
            (no_decay if is_plain else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0},
        ],
        lr=cfg.lr,
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer, round(total_steps * cfg.warmup_ratio), total_steps
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    history: list[dict[str, float]] = []
    best_figures: dict[str, float] = {}
    best_score, best_state = -float("inf"), None
    step, epoch = 0, 0
    while step < total_steps:
        epoch += 1
        model.train()
        batches = bucketed_batches(lengths, cfg.batch_size, rng)
        batches = shard(batches, accelerator.process_index, accelerator.num_processes)
        batches = batches[: total_steps - step]
        bar = tqdm(batches, desc=f"{desc} epoch {epoch}", disable=not ctx.progress)
        running = 0.0
        for n, idx in enumerate(bar, 1):
            batch = {
                k: v.to(accelerator.device)
                for k, v in task.collate(processor, encoded, idx).items()
            }
            if labelled:
                batch["labels"] = labels[idx].to(accelerator.device)
            loss = loss_fn(model, batch, idx)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            running += float(loss.detach())
            bar.set_postfix(loss=f"{running / n:.4f}")
        train_loss = running / max(1, len(batches))
        if accelerator.num_processes > 1:  # the mean over every process's batches
            sums = torch.tensor([running, len(batches)], device=accelerator.device)
            loss_sum, batch_count = accelerator.reduce(sums, reduction="sum").tolist()
            train_loss = loss_sum / max(1.0, batch_count)
        unwrapped = accelerator.unwrap_model(model)
        score, figures = validate(unwrapped)
        unwrapped.train()
        history.append({"epoch": epoch, "train_loss": train_loss, **figures})
        shown = ", ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in figures.items())
        ctx.log(f"{desc} epoch {epoch}: train loss {train_loss:.4f}, validation {shown}")
        if score > best_score:
            best_score, best_figures = score, figures
            if cfg.keep_best:
                best_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
    final = accelerator.unwrap_model(model)
    if cfg.keep_best and best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    return {
        "epochs": history,
        **{f"best_{k}": v for k, v in best_figures.items()},
        "steps": step,
        "processes": accelerator.num_processes,
    }
