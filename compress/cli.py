"""The `compress` command: run, validate, passes, report, bench, search, lint-trt, bundle,
doctor."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from compress._version import __version__
from compress.errors import CompressError, UserError

if TYPE_CHECKING:
    from compress.benchmark.compare import Check, Thresholds

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


def _quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _gate_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junit", type=Path, help="write the checks as JUnit XML")
    parser.add_argument("--json", type=Path, help="write the checks as JSON")


def _add_run(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="validate and run a recipe, then write the report")
    run.add_argument("recipe", type=Path, help="recipe YAML file")
    run.add_argument("--out", type=Path, help="run folder (default: runs/<recipe name>)")
    _overrides(run)
    run.add_argument("--no-report", action="store_true", help="skip the benchmark report")
    _quiet(run)
    validate = sub.add_parser("validate", help="check a recipe without loading any model")
    validate.add_argument("recipe", type=Path)
    _overrides(validate)
    passes = sub.add_parser("passes", help="list the passes and their options")
    passes.add_argument("name", nargs="?", help="show one pass only")
    report = sub.add_parser("report", help="(re)build the report of a run folder")
    report.add_argument("run_dir", type=Path)
    _quiet(report)


def _add_compare(bench: Subparsers) -> None:
    from compress.benchmark.compare import Thresholds

    compare = bench.add_parser(
        "compare", help="fail (exit 3) when CURRENT regressed against BASELINE"
    )
    compare.add_argument("baseline", type=Path, help="baseline report.json (or its folder)")
    compare.add_argument("current", type=Path, help="current report.json (or its folder)")
    for flag, default, metavar, text in (
        ("--max-accuracy-drop", Thresholds.max_accuracy_drop, "POINTS", "allowed accuracy "
         "drop in percentage points"),
        ("--max-latency-regression", Thresholds.max_latency_regression, "RATIO", "allowed "
         "growth of (stage p50 / original p50 of the same run)"),
        ("--max-size-growth", Thresholds.max_size_growth, "RATIO", "allowed growth of size "
         "on disk"),
    ):  # fmt: skip
        compare.add_argument(
            flag, type=float, default=default, metavar=metavar, help=f"{text} (default %(default)s)"
        )
    _gate_outputs(compare)
    suite = bench.add_parser(
        "run", help="run a suite's recipes and hold each report to its baseline (exit 3)"
    )
    suite.add_argument("suite", type=Path, help="suite YAML (see bench/suites/)")
    suite.add_argument("--baseline", type=Path, help="one baseline for every run of the suite")
    suite.add_argument("--out", type=Path, help="run folders (default: runs/suite-<name>)")
    _gate_outputs(suite)
    _quiet(suite)


def _add_bench_model(bench: Subparsers) -> None:
    from compress.tasks import TASK_NAMES

    model = bench.add_parser(
        "model", help="latency, throughput, memory (and accuracy) of one model on runtimes"
    )
    model.add_argument(
        "model", type=Path, help="model folder (PyTorch), .onnx file or TensorRT .engine/.plan"
    )
    model.add_argument(
        "--runtime",
        dest="runtimes",
        action="append",
        default=[],
        metavar="NAME",
        help="torch, torch-compile, torch-cuda, torch-cuda-fp16, torch-cuda-compile (folders); "
        "onnxruntime, onnxruntime-cuda, onnxruntime-tensorrt (.onnx); tensorrt (engines); "
        "repeatable",
    )
    model.add_argument("--batch-sizes", type=_int_list, default=[1, 8], metavar="1,8,32")
    model.add_argument(
        "--sequence-lengths", type=_int_list, default=[64], metavar="32,64,128", help="text only"
    )
    model.add_argument("--threads", type=int, default=2)
    model.add_argument("--warmup", type=int, default=10)
    model.add_argument("--repetitions", type=int, default=50)
    model.add_argument(
        "--data", help="inputs (and accuracy when labelled): a data source as in recipes"
    )
    model.add_argument("--eval-samples", type=int, help="test examples scored for accuracy")
    model.add_argument(
        "--no-accuracy", action="store_true", help="latency only, even for labelled --data"
    )
    model.add_argument("--task", choices=TASK_NAMES, help="default: detected")
    model.add_argument("--out", type=Path, help="results folder (default: bench-runs/<time>)")
    _quiet(model)


def _add_tools(sub: Subparsers) -> None:
    from compress.deploy.devices import BUNDLE_MODELS, BUNDLE_PRECISIONS, DEVICE_NAMES

    lint = sub.add_parser(
        "lint-trt", help="check an ONNX model for TensorRT (no GPU needed); exit 3 on errors"
    )
    lint.add_argument("model", type=Path, help="ONNX file")
    lint.add_argument("--no-polygraphy", action="store_true", help="skip `polygraphy check lint`")
    lint.add_argument("--quiet", action="store_true", help="print errors and warnings only")
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compress", description="Make trained models small and fast for edge hardware."
    )
    parser.add_argument("--version", action="version", version=f"compress {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    bench = sub.add_parser(
        "bench", help="benchmark a model on runtimes, or compare a report with a baseline"
    ).add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    _add_compare(bench)
    _add_bench_model(bench)
    _add_tools(sub)
    from compress.search.command import add_parser

    add_parser(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from compress.recipe import load_recipe
    from compress.run.runner import run_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    run_recipe(recipe, args.out, progress=not args.quiet, report=not args.no_report)
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
    from compress.run.reopen import report_run_folder

    report_run_folder(args.run_dir, progress=not args.quiet)
    return 0


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': need positive integers")
    return values


def _cmd_bench_model(args: argparse.Namespace) -> int:
    from compress.benchmark.model_bench import (
        ModelBenchSpec,
        bench_model,
        timestamp,
        write_results,
    )
    from compress.benchmark.model_bench_render import render_markdown

    spec = ModelBenchSpec(
        model=args.model,
        runtimes=args.runtimes,
        batch_sizes=args.batch_sizes,
        sequence_lengths=args.sequence_lengths,
        threads=args.threads,
        warmup=args.warmup,
        repetitions=args.repetitions,
        data=args.data,
        eval_samples=args.eval_samples,
        task=args.task,
        accuracy=not args.no_accuracy,
    )
    result = bench_model(spec, progress=not args.quiet)
    out = args.out or Path("bench-runs") / timestamp()
    written = write_results(result, out)
    print(render_markdown(result))
    print("results: " + ", ".join(str(p) for p in written))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "model":
        return _cmd_bench_model(args)
    if args.bench_command == "run":
        return _cmd_bench_suite(args)

    from compress.artifacts import load_report
    from compress.benchmark.compare import Thresholds, compare_reports

    limits = Thresholds(args.max_accuracy_drop, args.max_latency_regression, args.max_size_growth)
    checks = compare_reports(load_report(args.baseline), load_report(args.current), limits)
    return _gate(checks, limits, args)


def _cmd_bench_suite(args: argparse.Namespace) -> int:
    from compress.run.suite import flatten, load_suite, run_suite

    suite = load_suite(args.suite)
    out = args.out or Path("runs") / f"suite-{suite.name}"
    results = run_suite(suite, out, args.baseline, progress=not args.quiet)
    return _gate(flatten(results), suite.doc.budgets.thresholds(), args)


def _gate(checks: list[Check], limits: Thresholds, args: argparse.Namespace) -> int:
    """Print the checks, write JUnit/JSON when asked, and fail (exit 3) on a regression."""
    import json

    from compress.benchmark.compare import checks_json, junit_xml, render_checks
    from compress.errors import RegressionFound

    print(render_checks(checks))
    if args.junit:
        _write_text(args.junit, junit_xml(checks))
    if args.json:
        _write_text(args.json, json.dumps(checks_json(checks, limits), indent=2) + "\n")
    failed = [c for c in checks if not c.passed]
    if failed:
        names = ", ".join(sorted({f"{c.stage} {c.metric}" for c in failed})[:5])
        raise RegressionFound(f"{len(failed)} check(s) regressed: {names}")
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


COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "passes": _cmd_passes,
    "report": _cmd_report,
    "bench": _cmd_bench,
    "lint-trt": _cmd_lint_trt,
    "doctor": _cmd_doctor,
    "bundle": _cmd_bundle,
    "search": _cmd_search,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error, 3 a check failed, 1 other)."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # torchao, imported by transformers and NNCF, warns at import that its CUDA-only
    # extensions do not load on a CPU build of torch, and torch warns about its pytree
    # registrations: noise on every run, nothing a user can act on.
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
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
