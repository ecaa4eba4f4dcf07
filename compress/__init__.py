"""compress: make trained models small and fast for edge hardware, and prove it.

    >>> import compress
    >>> recipe = compress.load_recipe("recipes/distil_int8.yaml")   # doctest: +SKIP
    >>> compress.run(recipe, out_dir="runs/demo")                     # doctest: +SKIP

Importing this package loads no deep-learning framework; passes import their
backends when they run.

The package prints nothing: it logs under the `compress` logger (progress at INFO,
detail at DEBUG) and shows no progress bars unless asked (`run(..., progress=True)`).
To see the messages: `logging.basicConfig(level=logging.INFO)`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress._version import __version__

if TYPE_CHECKING:
    from compress.artifacts import StepResult
    from compress.recipe import Recipe

# a library's messages are the application's to show: none unless it configures logging
logging.getLogger("compress").addHandler(logging.NullHandler())


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read and validate a recipe (raises `compress.errors.RecipeError`)."""
    from compress.recipe import load_recipe as _load

    return _load(path, overrides)


def run(recipe: Recipe, out_dir: str | Path | None = None, **kwargs: Any) -> list[StepResult]:
    """Run a validated recipe and write its artifacts and report."""
    from compress.run.runner import run_recipe

    return run_recipe(recipe, Path(out_dir) if out_dir is not None else None, **kwargs)


__all__ = ["__version__", "load_recipe", "run"]
