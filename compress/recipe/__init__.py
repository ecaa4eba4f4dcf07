"""Recipes: the YAML schema, reading it with line marks, overrides, and the pass registry.

>>> from compress.recipe import load_recipe
>>> recipe = load_recipe("recipes/distil_int8.yaml")   # doctest: +SKIP
>>> [step.folder for step in recipe.steps]              # doctest: +SKIP
['01-fine_tune', '02-distill', ...]
"""

from __future__ import annotations

from compress.recipe.overrides import apply_override, key_parts, set_key
from compress.recipe.schema import ModelSpec, PassStep, Recipe, RecipeDoc
from compress.recipe.validate import describe_config, load_recipe, validate_recipe

__all__ = [
    "ModelSpec",
    "PassStep",
    "Recipe",
    "RecipeDoc",
    "apply_override",
    "describe_config",
    "key_parts",
    "load_recipe",
    "set_key",
    "validate_recipe",
]
