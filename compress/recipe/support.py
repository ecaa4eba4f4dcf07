"""The declared (pass, task, option) table: which passes serve which tasks, with what options.

Each task declares its row (`Task.support`); nothing else decides. A recipe is
checked against it before any model loads, so an unsupported pass, or an
option its task cannot use, fails with the file, line and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compress.tasks import TASK_NAMES, Task, get_task


@dataclass(frozen=True)
class Refusal:
    """Why a recipe's pass cannot run for its task: `option` is the offending key (dotted,
    None: the pass itself), `hint` what is possible instead."""

    message: str
    option: str | None = None
    hint: str | None = None


def refusal(task: Task, pass_name: str, config: Any) -> Refusal | None:
    """What the task's table says against running `pass_name` with `config` (None: fine)."""
    served = [name for name, row in task.support.items() if row.unavailable is None]
    row = task.support.get(pass_name)
    if row is None or row.unavailable is not None:
        why = f": {row.unavailable}" if row is not None and row.unavailable else ""
        return Refusal(
            f"'{pass_name}' does not serve {task.name} models{why}",
            hint=f"{task.name} models take: {', '.join(served)}",
        )
    for option, why in row.refuses.items():
        path, _, value = option.partition("=")
        if _is_set(config, path.split("."), value or None):
            return Refusal(why, option=path)
    return None


def _is_set(config: Any, path: list[str], value: str | None) -> bool:
    """Whether the option at `path` differs from its default (or, with `value`, equals it)."""
    head, rest = path[0], path[1:]
    current = getattr(config, head, None)
    if rest:
        return current is not None and _is_set(current, rest, value)
    if value is not None:
        return str(current) == value
    return bool(config.changed((head,)))


def table() -> dict[str, dict[str, str]]:
    """Every task's row: pass -> "yes", "own" (the task's own implementation), or why not."""
    rows: dict[str, dict[str, str]] = {}
    for name in TASK_NAMES:
        task = get_task(name)
        rows[name] = {
            p: row.unavailable or ("own" if row.run else "yes") for p, row in task.support.items()
        }
    return rows
