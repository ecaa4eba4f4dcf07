"""`--set key.path=value`: change a recipe's raw data before it is validated."""

from __future__ import annotations

from typing import Any

from compress.errors import RecipeError
from compress.recipe.yaml_lines import KeyPath, format_path, load_yaml


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply `a.b[0].c=value` (value parsed as YAML) to the raw recipe data."""
    if "=" not in item:
        raise RecipeError(f"'{item}' is not key=value", file="--set")
    key, _, raw_value = item.partition("=")
    if not key_parts(key):
        raise RecipeError(f"'{item}' has an empty key", file="--set")
    value, _ = load_yaml(raw_value, "--set") if raw_value.strip() else (None, None)
    set_key(data, key, value, where="--set")


def key_parts(key: str) -> KeyPath:
    """`passes[1].distill.layers` -> `("passes", 1, "distill", "layers")`."""
    parts: list[str | int] = []
    for token in key.replace("[", ".").replace("]", "").split("."):
        if token.strip():
            token = token.strip()
            parts.append(int(token) if token.isdigit() else token)
    return tuple(parts)


def set_key(data: dict[str, Any], key: str, value: Any, where: str = "--set") -> None:
    """Set `key` (as `key_parts` reads it) to `value` in raw recipe data, creating mappings."""
    parts = key_parts(key)
    if not parts:
        raise RecipeError(f"'{key}' is an empty key", file=where)
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
            missing = format_path(tuple(parts[: depth + 1]))
            raise RecipeError(f"'{missing}' does not exist in the recipe", file=where)
        node = child
    last = parts[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict) and isinstance(last, str):
        node[last] = value
    else:
        raise RecipeError(f"cannot set '{key}'", file=where)
