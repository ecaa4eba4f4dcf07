"""The library is quiet: it logs under `compress.*` and prints nothing; the CLI shows the log.

A Python-API run with logging at WARNING writes nothing to stdout or stderr (no prints, no
progress bars, no third-party warnings); `compress run` shows progress lines on stderr by
default, nothing with `--quiet`, and debug lines with `--verbose`.
"""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compress.cli import main
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "compress"
# standalone scripts copied into bundles, and the CLI commands whose output is the product
MAY_PRINT = ("compress/deploy/scripts/", "compress/cli")

RECIPE = """\
name: quiet
model:
  source: {model}
data:
  source: data.csv
  validation_size: 16
  test_size: 16
  max_length: 16
passes:
  - fine_tune: {{epochs: 1, batch_size: 16, min_steps: 0}}
  - export_onnx
  - quantize: {{calibration_samples: 8}}
benchmark:
  batch_sizes: [1]
  sequence_length: 16
  warmup: 1
  repetitions: 5
"""


@pytest.fixture()
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_labelled_csv(tmp_path, 48, 3)
    path = tmp_path / "quiet.yaml"
    path.write_text(RECIPE.format(model=tiny_model_dir))
    return path


def test_a_library_run_at_warning_writes_nothing(
    recipe_file: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Train, export, quantize and report through the Python API: every file is written, and
    not one byte reaches stdout or stderr, from compress or from the libraries it drives."""
    user = logging.StreamHandler()  # a user's own setup: warnings and errors to stderr
    user.setLevel(logging.WARNING)
    logging.getLogger().addHandler(user)
    caplog.set_level(logging.INFO, logger="compress")  # and what the CLI would show
    try:
        capfd.readouterr()
        results = run_recipe(load_recipe(recipe_file), tmp_path / "run")
        out, err = capfd.readouterr()
    finally:
        logging.getLogger().removeHandler(user)
    assert [r.name for r in results] == ["input", "fine_tune", "export_onnx", "quantize"]
    assert (tmp_path / "run" / "report.json").is_file()
    assert out == ""
    assert err == ""
    # the messages a CLI user sees went to the `compress.*` loggers instead
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("compress")]
    assert any(m.startswith("[2/3] export_onnx") for m in messages), messages
    assert any(m.startswith("report: ") for m in messages), messages


def test_a_fresh_process_run_at_warning_writes_nothing(recipe_file: Path, tmp_path: Path) -> None:
    """In a new process the backends are imported by the run itself: their import-time
    warnings (torchao, torch) are silenced too."""
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from compress.recipe import load_recipe\n"
        "from compress.run.runner import run_recipe\n"
        "steps = run_recipe(load_recipe(sys.argv[1], ['passes=[]']), sys.argv[2], report=False)\n"
        "assert [s.name for s in steps] == ['input'], steps\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(recipe_file), str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "00-input" / "manifest.json").is_file()
    assert (done.stdout, done.stderr) == ("", "")


def test_the_cli_shows_progress_hides_it_with_quiet_and_adds_debug_with_verbose(
    recipe_file: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    recipe = str(recipe_file)
    out = tmp_path / "run"
    overrides = ["--set", "passes=[{fine_tune: {epochs: 1, min_steps: 0}}]", "--no-report"]
    assert main(["run", recipe, "--out", str(out), *overrides]) == 0
    printed = capfd.readouterr()
    assert printed.out == ""  # progress is a log, on stderr
    assert "[1/1] fine_tune" in printed.err and f"-> {out}" in printed.err
    assert "DEBUG" not in printed.err and "debug:" not in printed.err

    # the same run again: every step is reused, and --quiet says nothing about it
    for quiet in (["--quiet", "run", recipe], ["run", recipe, "--quiet"]):
        assert main([*quiet, "--out", str(out), *overrides]) == 0
        assert capfd.readouterr() == ("", ""), quiet

    assert main(["--verbose", "run", recipe, "--out", str(out), *overrides]) == 0
    verbose = capfd.readouterr().err
    assert "[1/1] fine_tune" in verbose
    assert "debug: " in verbose  # detail that only --verbose shows


def test_the_cli_still_reports_errors_and_warnings_with_quiet(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("passes:\n  - quantise\n")
    assert main(["--quiet", "validate", str(bad)]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.startswith("error: ") and "quantise" in err


def test_the_cli_leaves_logging_as_it_found_it(recipe_file: Path) -> None:
    logger = logging.getLogger("compress")
    before = (list(logger.handlers), logger.level, logger.propagate)
    assert main(["--verbose", "validate", str(recipe_file)]) == 0
    assert (list(logger.handlers), logger.level, logger.propagate) == before


def _prints(path: Path) -> list[int]:
    """Lines that use the builtin `print`: called, or passed on (`log=print`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == "print" and isinstance(node.ctx, ast.Load)
    )


def test_no_library_module_prints() -> None:
    """Package code logs (`logging.getLogger(__name__)`); only the CLI and bundle scripts print."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(MAY_PRINT):
            continue
        if lines := _prints(path):
            found[name] = lines
    assert not found, f"use logging instead of print: {found}"


def test_the_scan_finds_a_print(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f(say=print):\n    x = 1\n    print(x)\n    say(x)\n")
    assert _prints(module) == [1, 3]


def test_the_compress_process_shows_each_line_once_when_a_backend_configured_the_root(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """ONNX Runtime's weight quantizer calls `logging.basicConfig` on import; the `compress`
    process's lines must not also go through that root handler. From Python, `main()` leaves
    propagation to the caller's root logger as it was."""
    from compress.cli import cli_logging

    seen: list[str] = []

    class Root(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    handler = Root()
    root.addHandler(handler)
    try:
        with cli_logging(logging.INFO, own_process=True):
            logging.getLogger("compress.example").info("shown once")
        assert seen == [] and capfd.readouterr().err.count("shown once") == 1
        with cli_logging(logging.INFO):
            logging.getLogger("compress.example").info("also to the caller")
        assert seen == ["also to the caller"]
        assert logging.getLogger("compress").propagate
    finally:
        root.removeHandler(handler)
