import subprocess
import sys
from pathlib import Path

import pytest

from compress.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compress", *args], capture_output=True, text=True, timeout=120
    )


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = Path(__file__).parents[1] / "recipes" / "distil_int8.yaml"
    assert main(["validate", str(recipe)]) == 0
    assert (
        "fine_tune -> distill -> prune -> prune_vocab -> export_onnx -> quantize"
        in capsys.readouterr().out
    )


def test_user_error_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("passes:\n  - quantise\n")
    done = run_cli("validate", str(bad))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: {bad}:2 passes[0]: unknown pass 'quantise', did you mean 'quantize'?"]


def test_run_rejects_before_loading_a_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("passes:\n  - fine_tune: {epochs: 0}\n")
    done = run_cli("run", str(bad), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "epochs" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_usage_error_exit_2() -> None:
    assert run_cli("frobnicate").returncode == 2


def test_passes_lists_every_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """`compress passes` prints one entry per registered pass, each with its options."""
    from compress.recipe import describe_config
    from compress.recipe.registry import get_pass, pass_names

    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    names = pass_names()
    assert {"fine_tune", "distill", "export_onnx", "quantize"} <= set(names)
    headers = [line.split("  (")[0] for line in out.splitlines() if "  (" in line[:40]]
    assert headers == names  # every registered pass, once, in order
    for name in names:
        for option, _, _ in describe_config(get_pass(name).config):
            assert f"    {option} " in out, (name, option)
    assert "calibration_samples" in out
    # the tasks each pass serves come from the tasks' declared table
    from compress.tasks import TASK_NAMES, get_task

    task_lines = [line for line in out.splitlines() if line.startswith("  tasks: ")]
    assert len(task_lines) == len(names)
    for name, line in zip(names, task_lines, strict=True):
        for task in TASK_NAMES:
            row = get_task(task).support.get(name)
            takes = row is not None and row.unavailable is None
            assert (f" {task}" in line) == takes, (name, task, line)


def test_report_on_non_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_import_is_light() -> None:
    code = (
        "import sys, compress, compress.cli;"
        "compress.load_recipe('recipes/distil_int8.yaml');"
        "names = ('torch', 'onnxruntime', 'transformers', 'optimum');"
        "heavy = [m for m in names if m in sys.modules];"
        "print(heavy)"
    )
    root = Path(__file__).parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_the_parser_loads_no_numpy_or_pydantic() -> None:
    """Every command builds the parser first, `compress --help` included: it stays light."""
    code = (
        "import sys; from compress.cli import _parser; _parser();"
        "print([m for m in ('numpy', 'pydantic', 'torch') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
