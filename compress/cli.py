"""The `compress` command: run, validate, passes, report."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from compress import __version__
from compress.errors import CompressError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compress", description="Make trained models small and fast for edge hardware."
    )
    parser.add_argument("--version", action="version", version=f"compress {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="validate and run a recipe, then write the report")
    run.add_argument("recipe", type=Path, help="recipe YAML file")
    run.add_argument("--out", type=Path, help="run folder (default: runs/<recipe name>)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set passes[0].fine_tune.epochs=2",
    )
    run.add_argument("--no-report", action="store_true", help="skip the benchmark report")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    validate = sub.add_parser("validate", help="check a recipe without loading any model")
    validate.add_argument("recipe", type=Path)
    validate.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE"
    )

    passes = sub.add_parser("passes", help="list the passes and their options")
    passes.add_argument("name", nargs="?", help="show one pass only")

    report = sub.add_parser("report", help="(re)build the report of a run folder")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from compress.recipe import load_recipe
    from compress.runner import run_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    run_recipe(recipe, args.out, progress=not args.quiet, report=not args.no_report)
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from compress.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    chain = " -> ".join(["model", *(s.name for s in recipe.steps), "report"])
    print(f"{args.recipe}: ok ({chain})")
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    from compress.recipe import describe_config
    from compress.registry import get_pass, pass_names

    names = [args.name] if args.name else pass_names()
    for name in names:
        info = get_pass(name)
        print(f"{info.name}  ({info.consumes} -> {info.produces})\n  {info.summary}")
        for option, default, description in describe_config(info.config):
            print(f"    {option:<20} {default:<22} {description}")
        print()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from compress.run_folder import report_run_folder

    report_run_folder(args.run_dir, progress=not args.quiet)
    return 0


COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "passes": _cmd_passes,
    "report": _cmd_report,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error, 1 other failure)."""
    args = _parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return COMMANDS[args.command](args)
    except CompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished steps are kept and reused by the next run", file=sys.stderr)
        return 130
