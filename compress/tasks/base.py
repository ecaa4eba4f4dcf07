"""What a task provides to the passes and the benchmark."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from compress.artifacts import ModelInfo

if TYPE_CHECKING:  # `compress.tasks` is read by the CLI's parser: no numpy or torch at import
    import numpy as np
    import torch

    from compress.data.loaders import Reader


@dataclass(frozen=True)
class Support:
    """How a task takes part in one pass: one row of the declared (pass, task, option) table.

    `run` names the task's own implementation of the pass, as "module:function"
    called `function(artifact, config, ctx)` (None: the pass's shared one, which
    asks the task for what differs). `refuses` maps an option (a dotted path
    into the config, e.g. "recovery.examples", optionally "=value" for one
    value of it) to why this task cannot use it: `compress validate` refuses a
    recipe that sets it. `on_failure: skip` lets a pass that cannot handle this
    task's file (a TensorRT build of an INT4 decoder) pass its input on, saying
    why, instead of failing the run. `outputs` ("module:function", called with
    the pass's config) declares the (precision, target) of the files the task's
    own implementation writes, where they differ from the pass's.
    """

    run: str | None = None
    outputs: str | None = None
    unavailable: str | None = None  # the pass does not serve this task, and why
    refuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    on_failure: Literal["fail", "skip"] = "fail"

    def implementation(self) -> Any:
        """The task's own function for the pass (None: the pass's shared one)."""
        return load_reference(self.run) if self.run else None


def load_reference(reference: str) -> Any:
    """The object a "module:attribute" reference names (the module is imported on use)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Objective(Protocol):
    """What a task's models learn and are validated on (classifiers: logits and labels;
    sentence embedders: their vectors), for the passes that train or score files.

    `metric` names the validation figure ("accuracy", "cosine"); `supervised`
    says whether the task has a loss on its labels alone (fine-tuning, QAT
    without a teacher).
    """

    metric: str
    supervised: bool
    scores_against_float: bool  # `score_file` needs the float model's outputs as `reference`

    def outputs(self, model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the losses read of a model's output for `batch` (logits, embeddings)."""
        ...

    def targets(self, model: Any, processor: Any, split: Any, ctx: Any, desc: str) -> torch.Tensor:
        """A teacher's outputs for every example of `split`, row = example index."""
        ...

    def supervised_loss(self) -> Any:
        """`loss(model, batch, indices)` on the batch's labels (None: the task has none)."""
        ...

    def distillation_loss(self, targets: torch.Tensor, temperature: float, alpha: float) -> Any:
        """`loss(model, batch, indices)` against cached teacher `targets`."""
        ...

    def importance_batches(self, model: Any, processor: Any, ctx: Any, count: int) -> list[Any]:
        """Training batches (inputs plus what `importance_loss` reads) for pruning scores."""
        ...

    def importance_loss(self, output: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss whose gradients rank heads and neurons (non-zero on the unpruned model)."""
        ...

    def validator(self, teacher: Any, processor: Any, ctx: Any) -> Any:
        """`validate(model) -> (score, figures)` after each epoch; higher is better. `teacher`
        is the model the student should match (the input model), where the task needs one."""
        ...

    def score_file(
        self, ctx: Any, processor: Any, file: Path, exact: bool, reference: Any
    ) -> float:
        """The validation `metric` of an ONNX file (`reference`: the float file it came from,
        or the float model's validation outputs)."""
        ...


class Task(Protocol):
    """One kind of model and data (text or image classification, generation, embeddings).

    `processor` is what turns raw inputs into model inputs and is saved beside
    the weights: a tokenizer, or an image preprocessor. `encoded` is whatever
    `encode` returns; only the task's own methods look inside it.

    `recipe_sources` are the `model` and `data` sources a recipe that names
    none uses (None: it must name one; `source_hints` says what it may name);
    `sample_data` is what `compress bench model` feeds when given no data.

    `support` is the task's row of the declared table: the passes it takes
    part in, the options it refuses, and its own implementation of a pass
    where the shared one does not fit (decoder LMs prune, export and quantize
    their own way). `objective` ("module:attribute" of an `Objective`) is
    what the shared training and scoring code asks; `measurer` is what the one
    report engine (`compress.run.report_step`) asks to measure a run's stages
    (`compress.benchmark.measurers`). Passes ask the task;
    they never compare its name.
    """

    name: str
    input_kind: str  # "texts" or "images"
    recipe_sources: Mapping[str, str | None]
    source_hints: Mapping[str, str]
    sample_data: str
    support: Mapping[str, Support]
    objective: str | None
    measurer: str  # "module:attribute" of how the report measures its stages
    export_outputs: tuple[str, ...]  # the outputs every ONNX file of the task carries
    fused_onnx: bool  # export_onnx also writes ONNX Runtime's fused graph (model_ort.onnx)
    macs_key: str  # the manifest key of `macs` (e.g. "matmul_macs_per_token")
    data_reader: Reader  # how `compress.data` reads its data

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        """A loadable location for a recipe's `model.source`."""
        ...

    def model_info(self, source: str, base_dir: Path | None = None) -> ModelInfo | None:
        """What the source's folder says of its architecture (None: not known before loading)."""
        ...

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        """(model, processor); the head is sized to `label_names` when given."""
        ...

    def save(self, model: Any, processor: Any, folder: Path) -> None: ...

    def load_processor(self, folder: Path) -> Any: ...

    def label_names(self, model: Any) -> list[str]: ...

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        """Parameters and multiply-accumulates per example (or per token)."""
        ...

    def encode(self, processor: Any, inputs: Sequence[Any], max_length: int) -> Any: ...

    def lengths(self, encoded: Any) -> list[int]:
        """Per-example sizes used to batch similar examples together."""
        ...

    def collate(self, processor: Any, encoded: Any, indices: Any) -> dict[str, torch.Tensor]: ...

    def fixed_batch(
        self, processor: Any, inputs: Sequence[Any], batch_size: int, sequence_length: int
    ) -> dict[str, np.ndarray]:
        """A latency batch of exactly `batch_size` real examples at a fixed shape."""
        ...

    def parity_batches(
        self, processor: Any, inputs: Sequence[Any], max_length: int
    ) -> list[dict[str, torch.Tensor]]:
        """Real inputs that an export is checked on against its source model."""
        ...

    def shape(self, processor: Any, sequence_length: int) -> str:
        """How one example's shape reads in a report, e.g. '64 tokens' or '3x224x224'."""
        ...

    def inner(self, model: Any) -> Any:
        """The transformer a pass prunes or cuts layers from (inside a ViT's or an embedder's
        wrapper; the model itself for a sequence classifier)."""
        ...

    def with_inner(self, model: Any, inner: Any) -> Any:
        """`model` with `inner` in place of its transformer (a new wrapper where it has one)."""
        ...

    def macs(self, model: Any, processor: Any, max_length: int) -> tuple[int, str]:
        """Multiply-accumulates of `model` and what they count (e.g. 'MACs per image')."""
        ...

    def export_onnx(
        self, model: Any, processor: Any, source: Path, folder: Path, opset: int
    ) -> Path:
        """Write `model` (loaded from `source`) as `folder/model.onnx` with dynamic batch (and
        sequence) axes and `export_outputs`, plus what loads it (tokenizer, preprocessing)."""
        ...

    def fuse_onnx(self, portable: Path, target: Path, model: Any) -> dict[str, int]:
        """ONNX Runtime's fusions of `portable` written to `target`; the fused operator counts."""
        ...


def support_for(task: Task, pass_name: str) -> Support:
    """The task's row for `pass_name` (a pass it does not take part in has none: KeyError)."""
    return task.support[pass_name]


def objective_of(task: Task) -> Objective:
    """The task's training and scoring objective."""
    if task.objective is None:
        raise ValueError(f"{task.name} models are not trained or scored by the shared passes")
    objective: Objective = load_reference(task.objective)
    return objective


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output (a Hugging Face output, or a tensor)."""
    logits: torch.Tensor = getattr(output, "logits", output)
    return logits
