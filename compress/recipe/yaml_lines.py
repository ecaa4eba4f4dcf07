"""Safe YAML loading that remembers the line of every key and item.

`load_yaml(text)` returns the plain data and a `LineMap` from key paths such as
`("passes", 2, "quantize", "method")` to 1-based line numbers, so validation
errors can point at `recipe.yaml:14`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from compress.errors import RecipeError, UserError

KeyPath = tuple[str | int, ...]

# Limits that stop "billion laughs" style alias expansion and absurd documents.
MAX_ALIASES = 64
MAX_DEPTH = 32
_ALLOWED_TAGS = {
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null")
}


def format_path(path: KeyPath) -> str:
    """`("passes", 2, "quantize", "method")` -> `passes[2].quantize.method`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LineMap:
    """Line numbers (1-based) of keys and sequence items, by key path."""

    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


def load_yaml(text: str, file: str = "<recipe>") -> tuple[Any, LineMap]:
    """Parse YAML safely (no tags beyond the standard ones) and map key paths to lines."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"invalid YAML: {problem}", file=file, line=line) from None
    if node is None:
        return None, LineMap()
    builder = _Builder(file)
    data = builder.build(node, ())
    return data, builder.line_map


def load_yaml_file(file: Path, what: str) -> tuple[Any, LineMap]:
    """`load_yaml` of a file; a missing or unreadable file is one line naming `what` it is."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{file}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read {what} ({exc})") from None
    return load_yaml(text, str(file))


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.line_map = LineMap()
        self.aliases = 0
        self.seen: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def _error(self, node: yaml.Node, path: KeyPath, message: str) -> RecipeError:
        return RecipeError(
            message, file=self.file, line=node.start_mark.line + 1, key=format_path(path) or None
        )

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        if len(path) > MAX_DEPTH:
            raise self._error(node, path, f"nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.seen:
            # The same node reached twice means an alias (`*name`) was used.
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise self._error(node, path, f"more than {MAX_ALIASES} YAML aliases")
        self.seen.add(id(node))
        if node.tag not in _ALLOWED_TAGS:
            if node.tag == "tag:yaml.org,2002:timestamp" and isinstance(node, yaml.ScalarNode):
                message = f"'{node.value}' reads as a date; quote it to make it text"
                raise self._error(node, path, message)
            raise self._error(node, path, f"YAML tag '{node.tag}' is not allowed")
        self.line_map.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise self._error(key_node, path, "YAML merge keys ('<<') are not supported")
                key = self.build(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    raise self._error(key_node, path, f"keys must be strings (got {key!r})")
                if key in out:
                    raise self._error(key_node, (*path, key), "duplicate key")
                self.line_map.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            raise self._error(node, path, f"invalid value: {exc}") from None
