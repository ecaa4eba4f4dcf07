from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from compress.artifacts import Artifact
from compress.errors import UserError
from compress.passes import distill as distill_module
from compress.passes.base import PassContext
from compress.passes.distill import DistillConfig, apply
from compress.text.layers import keep_layers, pick_layers
from tests.archs import assert_student_is_teacher_layers


def test_pick_layers() -> None:
    assert pick_layers(6, 3) == [0, 2, 4]
    assert pick_layers(6, 2) == [0, 3]
    assert pick_layers(12, 4) == [0, 3, 6, 9]
    assert pick_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert pick_layers(4, [2, 0]) == [0, 2]
    with pytest.raises(UserError, match="only 4 layers"):
        pick_layers(4, 5)
    with pytest.raises(UserError, match="only 4 layers"):
        pick_layers(4, [1, 4])


def test_layers_option_is_validated() -> None:
    with pytest.raises(ValueError, match="distinct"):
        DistillConfig(layers=[1, 1])
    with pytest.raises(ValueError, match=">= 1"):
        DistillConfig(layers=0)
    with pytest.raises(ValueError, match="hidden_weight needs"):
        DistillConfig(student="some/model", hidden_weight=1.0)


TEXTS = ["good film", "the plot was dull and the actor was not really fine", "a superb story"]


def _batch(folder: Path) -> dict[str, torch.Tensor]:
    return dict(AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt"))


def test_student_copies_the_chosen_teacher_layers(tiny_hf: Artifact) -> None:
    """`keep_layers` copies teacher layers 1 and 3 (and everything around them) unchanged."""
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_hf.path)
    student = keep_layers(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4 and len(teacher.bert.encoder.layer) == 4
    assert_student_is_teacher_layers(student, teacher, [1, 3], _batch(tiny_hf.path))


def test_the_pass_starts_the_student_as_the_teachers_picked_layers(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With training stubbed out, `distill(layers=2)` saves teacher layers 0 and 2 unchanged."""
    monkeypatch.setattr(distill_module, "train", lambda *args, **kwargs: {})
    ctx = make_ctx("kd-init")
    out = apply(tiny_hf, DistillConfig(layers=2), ctx)
    assert ctx.metrics["student_layers"] == [0, 2]
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_hf.path)
    student = AutoModelForSequenceClassification.from_pretrained(out.path)
    assert_student_is_teacher_layers(student, teacher, [0, 2], _batch(tiny_hf.path))


@pytest.mark.parametrize("hidden_weight", [0.0, 1.0])
def test_distilled_student_is_smaller_and_reloads(
    tiny_hf: Artifact, make_ctx: Callable[[str], PassContext], hidden_weight: float
) -> None:
    ctx = make_ctx(f"kd{hidden_weight}")
    cfg = DistillConfig(layers=2, epochs=2, batch_size=16, lr=1e-3, hidden_weight=hidden_weight)
    out = apply(tiny_hf, cfg, ctx)
    student = AutoModelForSequenceClassification.from_pretrained(out.path)
    assert student.config.num_hidden_layers == 2
    assert len(student.bert.encoder.layer) == 2
    assert ctx.metrics["student_layers"] == [0, 2]
    assert out.meta["parameters"] == sum(p.numel() for p in student.parameters())
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_hf.path)
    assert out.meta["parameters"] < sum(p.numel() for p in teacher.parameters())
    assert ctx.metrics["epochs"][-1]["train_loss"] < ctx.metrics["epochs"][0]["train_loss"]
