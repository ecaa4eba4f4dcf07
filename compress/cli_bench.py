"""`compress bench`: benchmark a model on runtimes, compare a report with its baseline, run a
suite; the gate's outputs (terminal, JUnit, JSON, $GITHUB_STEP_SUMMARY) and exit code 3."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from compress.errors import RegressionFound, UserError

if TYPE_CHECKING:
    from compress.benchmark.compare import Check, Thresholds

    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

log = logging.getLogger(__name__)


def log_flags(parser: argparse.ArgumentParser, quiet: str | None = None) -> None:
    """`--quiet` and `--verbose`, accepted before the command and after it alike.

    The subcommands' copies default to nothing, so that they never reset a flag given
    before the command name (the main parser sets both to False).
    """
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help=quiet or "warnings and errors only: no progress lines or bars",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also show debug messages",
    )


def _gate_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--junit", type=Path, help="write the checks as JUnit XML")
    parser.add_argument("--json", type=Path, help="write the checks as JSON")


def add_compare(bench: Subparsers) -> None:
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
    log_flags(compare)
    suite = bench.add_parser(
        "run", help="run a suite's recipes and hold each report to its baseline (exit 3)"
    )
    suite.add_argument("suite", type=Path, help="suite YAML (see bench/suites/)")
    suite.add_argument("--baseline", type=Path, help="one baseline for every run of the suite")
    suite.add_argument("--out", type=Path, help="run folders (default: runs/suite-<name>)")
    _gate_outputs(suite)
    log_flags(suite)


def add_bench_model(bench: Subparsers) -> None:
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
    log_flags(model)


def write_text(path: Path, text: str) -> None:
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
    result = bench_model(spec, progress=args.progress)
    out = args.out or Path("bench-runs") / timestamp()
    written = write_results(result, out)
    print(render_markdown(result))
    log.info("results: " + ", ".join(str(p) for p in written))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
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
    results = run_suite(suite, out, args.baseline, progress=args.progress)
    return _gate(flatten(results), suite.doc.budgets.thresholds(), args)


def _gate(checks: list[Check], limits: Thresholds, args: argparse.Namespace) -> int:
    """Print the checks (also to $GITHUB_STEP_SUMMARY), write JUnit/JSON, exit 3 on a regression."""
    from compress.benchmark.compare import junit_xml, render_checks, render_json, to_step_summary

    print(render_checks(checks))
    to_step_summary(checks)
    if args.junit:
        write_text(args.junit, junit_xml(checks))
    if args.json:
        write_text(args.json, render_json(checks, limits))
    failed = [c for c in checks if not c.passed]
    if failed:
        names = ", ".join(sorted({f"{c.stage} {c.metric}" for c in failed})[:5])
        raise RegressionFound(f"{len(failed)} check(s) regressed: {names}")
    return 0
