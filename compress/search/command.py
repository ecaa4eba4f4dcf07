"""`compress search RECIPE --space SPACE.yaml`: the command, and the search from end to end.

    compress search recipes/distil_int8.yaml --space bench/search/flagship_space.yaml \\
        --stage quantize --objective latency --max-drop 1.0 --budget 60m

Order of work: validate the recipe and the space (nothing runs on an error);
run the recipe's original (its fine-tuned model) and score it on the
validation split, which sets the accuracy floor; ask Optuna for trials until
`--trials` finished or `--budget` is spent (the recipe's own values first, when
they lie inside the space); then measure the front on the test split and
write the outputs (see `compress.search.outputs`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import UserError

if TYPE_CHECKING:
    from compress.recipe import PassStep
    from compress.search.study import Objective

BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


def parse_budget(text: str) -> float:
    """`90s`, `45m`, `1.5h` (a bare number is minutes) -> seconds."""
    match = BUDGET.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a time such as 45m, 90s or 1.5h")
    unit = {"s": 1, "m": 60, "min": 60, "h": 3600, None: 60}[match.group(2)]
    return float(match.group(1)) * unit


def add_parser(sub: Any) -> None:
    """The `search` subcommand's arguments."""
    search = sub.add_parser(
        "search",
        help="search a recipe's knobs for the fastest/smallest model within an accuracy budget",
    )
    search.add_argument("recipe", type=Path, help="recipe YAML file to search around")
    search.add_argument("--space", type=Path, required=True, help="search space YAML")
    search.add_argument("--objective", choices=("latency", "size", "both"), default="latency")
    search.add_argument(
        "--max-drop", type=float, default=1.0, metavar="POINTS",
        help="validation accuracy points a trial may lose vs the original (default %(default)s)",
    )  # fmt: skip
    search.add_argument("--budget", type=parse_budget, metavar="TIME", help="e.g. 45m (trial time)")
    search.add_argument("--trials", type=int, metavar="N", help="stop after N finished trials")
    search.add_argument(
        "--stage", help="pass whose model is scored (name or index; default: the last that "
        "produces a model, not an engine or bundle)",
    )  # fmt: skip
    search.add_argument(
        "--margin", type=float, default=1.0, metavar="POINTS",
        help="stop a trial early when an intermediate model's validation accuracy is this far "
        "below the floor (default %(default)s)",
    )  # fmt: skip
    search.add_argument("--seed", type=int, default=0, help="sampler seed")
    search.add_argument("--out", type=Path, help="search folder (default: runs/search-<recipe>)")
    search.add_argument("--quiet", action="store_true", help="no progress bar")


def command(args: argparse.Namespace) -> int:
    if args.trials is None and args.budget is None:
        raise UserError("say when to stop: --trials N and/or --budget TIME (e.g. --budget 45m)")
    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be at least 1")
    if not 0 <= args.max_drop <= 100:
        raise UserError("--max-drop is in accuracy points, between 0 and 100")
    out = args.out or Path("runs") / f"search-{args.recipe.stem}"
    written = run_search(
        args.recipe, args.space, out, args.objective, args.max_drop, args.budget, args.trials,
        stage=args.stage, margin=args.margin, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    print("search: " + ", ".join(str(p) for p in written))
    return 0


def stage_index(steps: list[PassStep], stage: str | None) -> int:
    """Index in the recipe's steps of the scored pass."""
    models = [
        s.index for s in steps if s.info.produces in ("hf", "onnx") and not s.info.after_report
    ]
    if not models:
        raise UserError("the recipe has no pass that produces a model to score")
    if stage is None:
        return models[-1]
    if stage.isdigit():
        if int(stage) in models:
            return int(stage)
        raise UserError(f"--stage {stage}: passes that produce a model are {models}")
    named = [s.index for s in steps if s.name == stage and s.index in models]
    if not named:
        names = sorted({steps[i].name for i in models})
        raise UserError(
            f"--stage {stage}: not a pass of the recipe that produces a model ({', '.join(names)})"
        )
    return named[-1]


def run_search(
    recipe_file: Path,
    space_file: Path,
    out: Path,
    objective: Objective,
    max_drop: float,
    budget_s: float | None,
    trials: int | None,
    *,
    stage: str | None = None,
    margin: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Search, then write the outputs; returns the files written."""
    from compress.data.loaders import load_dataset
    from compress.recipe import load_recipe
    from compress.recipe.yaml_lines import load_yaml_file
    from compress.run.lock import run_folder_lock
    from compress.run.report_step import original_index
    from compress.search.space import load_space
    from compress.search.study import Limits, open_study, requeue_interrupted, search_loop
    from compress.search.trial import Setup, Stage, absolute_sources, run_config, trial_data

    recipe = load_recipe(recipe_file)
    raw, lines = load_yaml_file(recipe_file, "recipe")
    raw = absolute_sources(raw, recipe.resolved)
    space = load_space(space_file, raw, lines, recipe_file)
    scored = stage_index(recipe.steps, stage)
    for knob in space.knobs:
        if knob.path[0] == "passes" and int(knob.path[1]) > scored:
            raise UserError(
                f"{space_file}: {knob.key} is after the scored pass "
                f"({recipe.steps[scored].folder}); pick a later --stage or drop the key"
            )
    task = recipe.task
    data = load_dataset(recipe.doc.data, recipe.file.parent, task.data_reader)
    if not data.labelled or len(data.validation) == 0:
        raise UserError(f"{data.source}: a search scores trials on labelled validation data")
    bench = recipe.doc.benchmark
    settings = bench.model_copy(update={"batch_sizes": [bench.batch_sizes[0]]})
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        "recipe": raw, "space": space.text, "objective": objective, "max_drop": max_drop,
        "stage": scored, "margin": margin, "seed": seed,
    }  # fmt: skip
    with run_folder_lock(out):
        study = open_study(out, objective, fingerprint)
        setup = Setup(recipe, raw, scored, out, data, task, settings, margin)
        original_at = original_index(recipe)
        print(f"search: {recipe_file} over {len(space.knobs)} knobs -> {out}")
        first = run_config(setup, trial_data(raw, original_at - 1), "original")
        if not first.score:
            raise UserError(f"the original did not run: {first.error or first.stopped}")
        setup.original = Stage(Path(first.score["stage"]), first.score["variant"])
        setup.floor = first.score["val_accuracy"] - max_drop / 100
        accuracy = first.score["val_accuracy"]
        print(f"original: validation accuracy {accuracy:.2%}; floor {setup.floor:.2%}")
        if requeue_interrupted(study):
            print("resuming: the trial that was running is asked again with the same values")
        own = space.current(recipe.resolved)
        if own is not None and not study.get_trials(deepcopy=False):
            params = {k.key: k.param(own[k.key]) for k in space.knobs}
            study.enqueue_trial(params, user_attrs={"hand_written": True})
        limits = Limits(trials, budget_s, seed)
        original_bytes = int(first.score["size_bytes"])
        search_loop(study, setup, space, raw, objective, limits, original_bytes, progress)
        return _finish(study, setup, space, raw, first.score, objective, max_drop)


def _finish(
    study: Any,
    setup: Any,
    space: Any,
    raw: dict[str, Any],
    original: dict[str, Any],
    objective: Objective,
    max_drop: float,
) -> list[Path]:
    from compress.search import outputs
    from compress.search.trial import run_config, trial_data

    front_trials = study.best_trials
    numbers = {t.number for t in front_trials}
    trials = outputs.trials_json(study, numbers)
    rows: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = []
    seen: set[str] = set()
    own = next((t for t in trials if t["hand_written"] and t["state"] == "complete"), None)
    if own is not None:
        attrs = study.trials[own["number"]].user_attrs
        rows.append(("hand-written", own["values"], attrs["score"], own["on_front"]))
        seen.add(attrs["folder"])
    else:  # the recipe's own values lie outside the space: run it as it is
        ran = run_config(setup, trial_data(raw, setup.stage), "hand-written")
        if ran.score:
            rows.append(("hand-written", {}, ran.score, False))
    for trial in sorted(front_trials, key=lambda t: t.number):
        folder = trial.user_attrs["folder"]
        if folder not in seen:  # the same values asked twice: one row
            seen.add(folder)
            attrs = trial.user_attrs
            rows.append((f"trial {trial.number}", attrs["values"], attrs["score"], True))
    measured = outputs.measure_front(setup, original, rows)
    best = outputs.best_of([r for r in measured["rows"] if r["on_front"]], objective)
    counts = {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "fail")}
    pareto = {
        "recipe": str(setup.recipe.file),
        "stage": setup.recipe.steps[setup.stage].folder,
        "space": {
            k.key: list(k.choices) if k.choices is not None else [k.low, k.high]
            for k in space.knobs
        },
        "objective": objective,
        "max_drop": max_drop,
        "floor": setup.floor,
        "batch_size": setup.settings.batch_sizes[0],
        "sequence_length": setup.settings.sequence_length,
        "threads": setup.settings.threads,
        "n_validation": len(setup.data.validation),
        "trials": {
            "total": len(trials),
            "scored": counts["complete"],
            "stopped": counts["pruned"],
            "failed": sum(t["state"] == "fail" and "error" in t for t in trials),
            "interrupted": sum(t["state"] == "fail" and "error" not in t for t in trials),
            "seconds": round(sum(float(t["seconds"] or 0) for t in trials)),
        },
        **measured,
        "best": best["label"] if best else None,
        "verdict": _verdict(measured, best, objective),
    }
    written = outputs.write_outputs(setup.out, pareto, trials)
    if best is not None:
        outputs.write_best(
            setup.out / "best.yaml", space, raw, {**best, "batch": pareto["batch_size"]}
        )
        written.append(setup.out / "best.yaml")
    return written


def _verdict(measured: dict[str, Any], best: dict[str, Any] | None, objective: str) -> str:
    from compress.search.outputs import dominates

    hand = next((r for r in measured["rows"] if r["label"] == "hand-written"), None)
    if best is None:
        return "No trial kept the validation accuracy within the budget."
    if hand is None:
        return f"Best within the budget: {best['label']}."
    if best is hand:
        return "The hand-written recipe is on the front and the best within the budget."
    if dominates(best, hand, objective):
        return (
            f"{best['label']} dominates the hand-written recipe on the test split: "
            f"{100 * (best['test_accuracy'] - hand['test_accuracy']):+.2f} points, "
            f"{hand['p50_ms'] / best['p50_ms']:.2f}x its speed, "
            f"{hand['size_bytes'] / best['size_bytes']:.2f}x smaller."
        )
    return (
        f"{best['label']} does not dominate the hand-written recipe on the test split "
        f"({100 * (best['test_accuracy'] - hand['test_accuracy']):+.2f} points, "
        f"{hand['p50_ms'] / best['p50_ms']:.2f}x its speed)."
    )
