"""Tasks: how a kind of model reads its data, loads, saves and is fed.

A task turns a split's raw inputs (texts, images) into model inputs, loads and
saves its models, and builds fixed-shape batches for latency. Passes and the
benchmark go through it, so the same passes serve text and image classifiers.
This module is the one list of tasks; each task's module is imported on use.
"""

from __future__ import annotations

import importlib

from compress.errors import UserError, did_you_mean
from compress.tasks.base import Task

TASK_MODULES = {
    "text-classification": "compress.tasks.text",
    "image-classification": "compress.tasks.image",
    "text-generation": "compress.tasks.generation",
    "text-embedding": "compress.tasks.embedding",
}
TASK_NAMES: tuple[str, ...] = tuple(TASK_MODULES)
DEFAULT_TASK = TASK_NAMES[0]  # what a recipe without `task:` is


def classifier_task(images: bool) -> str:
    """The classification task of a model found on disk (what `compress bench model` measures)."""
    return "image-classification" if images else "text-classification"


def get_task(name: str) -> Task:
    """The task called `name` (its module is imported on first use)."""
    if name not in TASK_MODULES:
        hint = did_you_mean(name, TASK_MODULES)
        known = f"known: {', '.join(TASK_MODULES)}"
        raise UserError(f"unknown task '{name}' ({hint or known})")
    task: Task = importlib.import_module(TASK_MODULES[name]).TASK
    return task


__all__ = ["DEFAULT_TASK", "TASK_MODULES", "TASK_NAMES", "Task", "classifier_task", "get_task"]
