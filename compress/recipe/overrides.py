"""`--set key.path=value`: change a recipe's raw data before it is validated."""

from __future__ import annotations

from typing import Any

from compress.errors import RecipeError
from compress.recipe.yaml_lines import format_path, load_yaml


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply `a.b[0].c=value` (value parsed as YAML) to the raw recipe data."""
    if "=" not in item:
        raise RecipeError(f"'{item}' is not key=value", file="--set")
    key, _, raw_value = item.partition("=")
    value, _ = load_yaml(raw_value, "--set") if raw_value.strip() else (None, None)
    parts: list[str | int] = []
    for token in key.replace("[", ".").replace("]", "").split("."):
        if token:
            parts.append(int(token) if token.isdigit() else token)
    if not parts:
        raise RecipeError(f"'{item}' has an empty key", file="--set")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        nxt = parts[depth + 1]
        child: Any = None
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            child = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            child = node.setdefault(part, [] if isinstance(nxt, int) else {})
        if isinstance(child, str) and child == nxt:
            child = {child: {}}  # a pass written bare (`- distill`) now given options
            node[part] = child
        elif isinstance(child, dict) and isinstance(nxt, str) and child.get(nxt, 0) is None:
            child[nxt] = {}  # `- distill:` with no options
        if not isinstance(child, dict | list):
            where = format_path(tuple(parts[: depth + 1]))
            raise RecipeError(f"'{where}' does not exist in the recipe", file="--set")
        node = child
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise RecipeError(f"cannot set '{key}'", file="--set")
