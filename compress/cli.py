"""The `compress` command: run, validate, passes, report, bench, search, lint-trt, bundle,
doctor."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeAlias

from compress._version import __version__
from compress.cli_bench import add_bench_model, add_compare, cmd_bench, log_flags
from compress.errors import CompressError, UserError

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set passes[0].fine_tune.epochs=2",
    )


def _add_run(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="validate and run a recipe, then write the report")
    run.add_argument("recipe", type=Path, help="recipe YAML file")
    run.add_argument("--out", type=Path, help="run folder (default: runs/<recipe name>)")
    _overrides(run)
    run.add_argument("--mlflow", metavar="URI", help="log the run to MLflow at this tracking URI")
    run.add_argument("--no-report", action="store_true", help="skip the benchmark report")
    log_flags(run)
    validate = sub.add_parser("validate", help="check a recipe without loading any model")
    validate.add_argument("recipe", type=Path)
    _overrides(validate)
    log_flags(validate)
    passes = sub.add_parser("passes", help="list the passes and their options")
    passes.add_argument("name", nargs="?", help="show one pass only")
    log_flags(passes)
    report = sub.add_parser("report", help="(re)build the report of a run folder")
    report.add_argument("run_dir", type=Path, nargs="?")
    report.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of report.json and exit"
    )
    log_flags(report)


def _add_tools(sub: Subparsers) -> None:
    from compress.deploy.devices import BUNDLE_MODELS, BUNDLE_PRECISIONS, DEVICE_NAMES

    lint = sub.add_parser(
        "lint-trt", help="check an ONNX model for TensorRT (no GPU needed); exit 3 on errors"
    )
    lint.add_argument("model", type=Path, help="ONNX file")
    lint.add_argument("--no-polygraphy", action="store_true", help="skip `polygraphy check lint`")
    log_flags(lint, quiet="print errors and warnings only")
    bundle = sub.add_parser(
        "bundle", help="package a finished run's model for a device (folder + .tar.gz)"
    )
    bundle.add_argument("run_dir", type=Path)
    bundle.add_argument("--target", required=True, metavar="TARGET", help=", ".join(DEVICE_NAMES))
    bundle.add_argument(
        "--model",
        default="auto",
        choices=BUNDLE_MODELS,
        help="ONNX file to ship (default: the TensorRT Q/DQ file on GPUs, else the FP32 export)",
    )
    bundle.add_argument("--precision", default="auto", choices=BUNDLE_PRECISIONS)
    bundle.add_argument("--out", type=Path, help="bundle folder (default: RUN_DIR/bundle-TARGET)")
    log_flags(bundle)
    doctor = sub.add_parser(
        "doctor", help="list the backends, devices and offline assets this machine can use"
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="exit 2 unless these are usable, e.g. --require cuda,tensorrt_rtx",
    )
    log_flags(doctor)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compress", description="Make trained models small and fast for edge hardware."
    )
    parser.add_argument("--version", action="version", version=f"compress {__version__}")
    log_flags(parser)
    parser.set_defaults(quiet=False, verbose=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    bench = sub.add_parser(
        "bench", help="benchmark a model on runtimes, or compare a report with a baseline"
    ).add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    add_compare(bench)
    add_bench_model(bench)
    _add_tools(sub)
    from compress.search.command import add_parser

    log_flags(add_parser(sub))
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from compress.recipe import load_recipe
    from compress.run.runner import run_recipe
    from compress.tracking import mlflow_uri_override

    recipe = load_recipe(args.recipe, [*args.overrides, *mlflow_uri_override(args.mlflow)])
    run_recipe(recipe, args.out, progress=args.progress, report=not args.no_report)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from compress.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    before = [s.name for s in recipe.steps if not s.info.after_report]
    after = [s.name for s in recipe.steps if s.info.after_report]  # read the report
    chain = " -> ".join(["model", *before, "report", *after])
    print(f"{args.recipe}: ok ({chain})")
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    from compress.recipe import describe_config
    from compress.recipe.registry import get_pass, pass_names
    from compress.recipe.support import table

    served = table()
    names = [args.name] if args.name else pass_names()
    for name in names:
        info = get_pass(name)
        print(f"{info.name}  ({'|'.join(info.accepts)} -> {info.produces})\n  {info.summary}")
        tasks = [
            f"{task}{' (its own)' if rows[name] == 'own' else ''}"
            for task, rows in served.items()
            if rows.get(name) in ("yes", "own")
        ]
        print(f"  tasks: {', '.join(tasks) or 'none'}")
        for option, default, description in describe_config(info.config):
            print(f"    {option:<20} {default:<22} {description}")
        print()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    if args.schema:
        import json

        from compress.artifacts.records import report_schema
        from compress.tasks import TASK_NAMES

        print(json.dumps(report_schema(list(TASK_NAMES)), indent=2))
        return 0
    if args.run_dir is None:
        raise UserError("compress report: give a run folder (or --schema)")
    from compress.run.reopen import report_run_folder

    report_run_folder(args.run_dir, progress=args.progress)
    return 0


def _cmd_lint_trt(args: argparse.Namespace) -> int:
    from compress.errors import LintFailed
    from compress.trt.lint import lint_onnx, render

    findings = lint_onnx(args.model, polygraphy=not args.no_polygraphy)
    shown = [f for f in findings if f.severity != "info"] if args.quiet else findings
    print(render(args.model, shown))
    errors = sum(f.severity == "error" for f in findings)
    if errors:
        raise LintFailed(f"{args.model}: {errors} finding(s) TensorRT would reject")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    from compress.deploy.devices import get_device
    from compress.passes.bundle import BundleConfig, package

    get_device(args.target)  # an unknown target is one line with a suggestion
    cfg = BundleConfig(target=args.target, model=args.model, precision=args.precision)
    package(args.run_dir, cfg, args.out or args.run_dir / f"bundle-{args.target}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from compress.search.command import command

    return command(args)


def _cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from compress.doctor import check_required, collect, render_table, to_json
    from compress.system import machine_info

    required = [name.strip() for item in args.require for name in item.split(",") if name.strip()]
    checks = collect()
    system = machine_info()
    if args.json:
        print(json.dumps(to_json(checks, system), indent=2))
    else:
        print(render_table(checks, system))
    check_required(checks, required)
    return 0


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a message comes (a redirect or capture too)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        pass


class _Concise(logging.Formatter):
    """The message alone for INFO; `warning: ...`, `error: ...`, `debug: ...` otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno == logging.INFO:
            return text
        return f"{record.levelname.lower()}: {text}"


@contextlib.contextmanager
def cli_logging(level: int, own_process: bool = False) -> Iterator[None]:
    """Show the `compress` loggers' messages at `level` and up on stderr while a command runs.

    The handler and level are restored after, so that `main()` called from Python leaves
    the caller's logging as it was; there, records still propagate to the caller's root
    logger. In the `compress` process itself (`own_process`) they do not: a backend that
    configures the root logger on import (ONNX Runtime's weight quantizer calls
    `logging.basicConfig`) would print every line twice.
    """
    from compress.run.noise import quiet_backends

    logger = logging.getLogger("compress")
    handler = _Stderr()
    handler.setFormatter(_Concise())
    saved, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate and not own_process
    try:
        with quiet_backends():
            yield
    finally:
        handler.flush()
        logger.removeHandler(handler)
        logger.setLevel(saved)
        logger.propagate = propagate


COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "passes": _cmd_passes,
    "report": _cmd_report,
    "bench": cmd_bench,
    "lint-trt": _cmd_lint_trt,
    "doctor": _cmd_doctor,
    "bundle": _cmd_bundle,
    "search": _cmd_search,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error, 3 a check failed, 1 other).

    Messages go to stderr through the `compress` logger: INFO and up by default,
    WARNING and up with `--quiet`, DEBUG with `--verbose`; progress bars only on a
    terminal and never with `--quiet`. What a command answers (tables, JSON) goes to stdout.
    """
    args = _parser().parse_args(argv)
    if args.quiet and args.verbose:
        _parser().error("--quiet and --verbose exclude each other")
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    args.progress = not args.quiet and sys.stderr.isatty()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with cli_logging(level, own_process=argv is None):
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except CompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished steps are kept and reused by the next run", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`compress passes | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
