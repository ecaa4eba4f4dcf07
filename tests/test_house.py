"""What holds the house together: layers, file sizes, and every pass tested, used and round-tripped.

The layer contracts live in pyproject.toml ([tool.importlinter]); `lint-imports`
checks them in .ci/run and here, so the README's test command keeps them too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compress.recipe import load_recipe
from compress.recipe.registry import get_pass, pass_names

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "compress"
MAX_LINES = 400
# options a pass cannot do without (everything else has a default)
REQUIRED = {"bundle": {"target": "x86-cpu"}}


def _lint_imports() -> str:
    found = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(found).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return found


def test_import_contracts_hold() -> None:
    done = subprocess.run(
        [_lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_module_imports_the_package_root() -> None:
    """`compress/__init__` is the public API; modules import what they need from below it."""
    import grimp

    graph = grimp.build_graph("compress", cache_dir=None)
    importers = graph.find_modules_that_directly_import("compress") - {"compress.__main__"}
    assert not importers, sorted(importers)


def test_modules_stay_small() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert not too_long, f"split these (over {MAX_LINES} lines): {too_long}"


def test_every_pass_has_a_test_module_and_a_recipe() -> None:
    used = set()
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        used |= {step.name for step in load_recipe(recipe).steps}
    for name in pass_names():
        assert (ROOT / "tests" / "passes" / f"test_{name}.py").is_file(), f"no tests for {name}"
        assert name in used, f"no recipe in recipes/ uses the pass '{name}'"


@pytest.mark.parametrize("name", pass_names())
def test_pass_config_round_trips_through_yaml(name: str) -> None:
    """The resolved form of a config (what recipe.resolved.yaml holds) reads back to itself."""
    config_type = get_pass(name).config
    config = config_type.model_validate(REQUIRED.get(name, {}))
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    assert config_type.model_validate(yaml.safe_load(text)) == config


def test_resolved_recipes_validate_to_the_same_steps(tmp_path: Path) -> None:
    """Every shipped recipe, written out resolved, validates again to the same passes."""
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = load_recipe(path)
        resolved = tmp_path / f"{path.stem}.resolved.yaml"
        resolved.write_text(yaml.safe_dump(recipe.resolved, sort_keys=False))
        again = load_recipe(resolved)
        assert [(s.name, s.config) for s in again.steps] == [
            (s.name, s.config) for s in recipe.steps
        ], path.name
        assert again.resolved == recipe.resolved, path.name


def _task_name_literals(root: Path) -> list[str]:
    """`file:line 'name'` of every string constant equal to a task name in `root`'s modules,
    outside compress/tasks/ (docstrings and descriptions that merely mention one are longer
    strings, not the name itself)."""
    import ast

    from compress.tasks import TASK_NAMES

    found = []
    for path in sorted(root.rglob("*.py")):
        if (root / "tasks") in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in TASK_NAMES:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.value!r}")
    return found


def test_no_module_outside_tasks_names_a_task() -> None:
    """Passes, the report, data and deploy code ask the task (its table, objective, measurer,
    reader); they never compare, switch on or write a task's name themselves."""
    import compress

    found = _task_name_literals(Path(compress.__file__).parent)
    assert not found, "task names outside compress/tasks/:\n" + "\n".join(found)


def test_task_name_check_finds_a_comparison(tmp_path: Path) -> None:
    """The check above is not vacuous: a pass that branches on a task's name is found, in a
    comparison, a `match` case and a membership test alike."""
    package = tmp_path / "compress"
    (package / "passes").mkdir(parents=True)
    (package / "tasks").mkdir()
    (package / "passes" / "bad.py").write_text(
        "def apply(ctx):\n"
        "    if ctx.task.name == 'text-generation':\n"
        "        return 1\n"
        "    match ctx.task.name:\n"
        "        case 'image-classification':\n"
        "            return 2\n"
        "    return ctx.task.name in ('text-embedding',)\n"
    )
    (package / "tasks" / "fine.py").write_text("NAME = 'text-generation'\n")
    found = _task_name_literals(package)
    assert [f.split(" ")[1] for f in found] == [
        "'text-generation'",
        "'image-classification'",
        "'text-embedding'",
    ]
    assert all(f.startswith("compress/passes/bad.py:") for f in found)
