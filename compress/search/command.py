"""`compress search RECIPE --space SPACE.yaml`: the command, and the search from end to end.

    compress search recipes/distil_int8.yaml --space bench/search/flagship_space.yaml \\
        --stage quantize --objective latency --max-drop 1.0 --budget 60m

Order of work: validate the recipe and the space (nothing runs on an error);
run the recipe's original (its fine-tuned model) and score it on the
validation split, which sets the accuracy floor; ask Optuna for trials until
`--trials` finished or `--budget` is spent (the recipe's own values first, when
they lie inside the space); then measure the front on the test split and
write the outputs (see `compress.search.outputs`).

Several workers may share one study (`--storage`, `--workers`; see
`compress.search.storage` and `compress.search.workers`): each asks for trials
until the study's limits are reached, and the last one writes the outputs
once. `--keep front` then frees the steps only other trials used
(`compress.search.reclaim`).
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from compress.errors import UserError
from compress.search.storage import HEARTBEAT_S

if TYPE_CHECKING:
    from compress.recipe import PassStep, Recipe
    from compress.search.space import Space
    from compress.search.study import Objective

log = logging.getLogger(__name__)

Keep = Literal["front", "all"]

BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


def parse_budget(text: str) -> float:
    """`90s`, `45m`, `1.5h` (a bare number is minutes) -> seconds."""
    match = BUDGET.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"'{text}' is not a time such as 45m, 90s or 1.5h")
    unit = {"s": 1, "m": 60, "min": 60, "h": 3600, None: 60}[match.group(2)]
    return float(match.group(1)) * unit


def add_parser(sub: Any) -> argparse.ArgumentParser:
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
    search.add_argument(
        "--storage", metavar="URL", help="Optuna storage shared by workers: postgresql://..., "
        "mysql://..., sqlite:///FILE or journal:PATH (default: the journal in --out)",
    )  # fmt: skip
    search.add_argument(
        "--workers", type=int, default=1, metavar="N",
        help="worker processes on this machine, threads split between them (default 1)",
    )  # fmt: skip
    search.add_argument(
        "--threads", type=int, metavar="N",
        help="CPU threads of this worker (training and latency; default: the recipe's)",
    )  # fmt: skip
    search.add_argument(
        "--keep", choices=("front", "all"), default="front",
        help="when the search ends, keep the steps of the front only (default) or of every trial",
    )  # fmt: skip
    search.add_argument(
        "--finish", action="store_true",
        help="write the front, reports and best.yaml of a study whose trials have ended",
    )  # fmt: skip
    search.add_argument(
        "--heartbeat", type=int, default=HEARTBEAT_S, metavar="SECONDS",
        help="a worker's heartbeat; a trial silent for 3 of them is retried (default %(default)s)",
    )  # fmt: skip
    return search  # type: ignore[no-any-return]


def command(args: argparse.Namespace) -> int:
    if args.trials is None and args.budget is None and not args.finish:
        raise UserError("say when to stop: --trials N and/or --budget TIME (e.g. --budget 45m)")
    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be at least 1")
    if not 0 <= args.max_drop <= 100:
        raise UserError("--max-drop is in accuracy points, between 0 and 100")
    for option in ("workers", "threads", "heartbeat"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise UserError(f"--{option} must be at least 1")
    out = args.out or Path("runs") / f"search-{args.recipe.stem}"
    if args.workers > 1 and not args.finish:
        validate_search(args.recipe, args.space, args.stage)  # once, before N workers start
        from compress.search.workers import run_workers

        return run_workers(args, out)
    written = run_search(
        args.recipe, args.space, out, args.objective, args.max_drop, args.budget, args.trials,
        stage=args.stage, margin=args.margin, seed=args.seed, progress=args.progress,
        storage=args.storage, keep=args.keep, finish_only=args.finish, threads=args.threads,
        heartbeat=args.heartbeat,
    )  # fmt: skip
    if written:
        log.info("search: " + ", ".join(str(p) for p in written))
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


def validate_search(
    recipe_file: Path, space_file: Path, stage: str | None
) -> tuple[Recipe, dict[str, Any], Space, int]:
    """The recipe, its raw data, the space and the scored pass index, all validated."""
    from compress.recipe import load_recipe
    from compress.recipe.yaml_lines import load_yaml_file
    from compress.search.space import load_space
    from compress.search.trial import absolute_sources

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
    return recipe, raw, space, scored


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
    progress: bool = False,
    storage: str | None = None,
    keep: Keep = "all",
    finish_only: bool = False,
    threads: int | None = None,
    heartbeat: int = HEARTBEAT_S,
) -> list[Path]:
    """Search (one worker of the study), then write the outputs if this worker ends the study;
    returns the files written (none when another worker still runs trials).

    `keep="front"` (the command's default) reclaims the steps only other trials used.
    """
    from compress.artifacts import hash_json
    from compress.data.loaders import load_dataset
    from compress.run.report_step import original_index
    from compress.search.ending import finish_once
    from compress.search.locks import SEARCH_LOCK, hold
    from compress.search.storage import claim_folder, open_storage, study_name
    from compress.search.study import Limits, open_study, search_loop
    from compress.search.trial import Setup, Stage, run_config, trial_data
    from compress.tracking import track_search

    recipe, raw, space, scored = validate_search(recipe_file, space_file, stage)
    task = recipe.task
    data = load_dataset(recipe.doc.data, recipe.file.parent, task.data_reader)
    if not data.labelled or len(data.validation) == 0:
        raise UserError(f"{data.source}: a search scores trials on labelled validation data")
    bench = recipe.doc.benchmark
    update: dict[str, Any] = {"batch_sizes": [bench.batch_sizes[0]]}
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        update["threads"] = threads
    settings = bench.model_copy(update=update)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        "recipe": raw, "space": space.text, "objective": objective, "max_drop": max_drop,
        "stage": scored, "margin": margin, "seed": seed,
    }  # fmt: skip
    name = study_name(storage, recipe.name, hash_json(fingerprint))
    with hold(out / SEARCH_LOCK):
        claim_folder(out, storage, name)
        study = open_study(open_storage(storage, out, heartbeat), name, out, objective, fingerprint)
        own = space.current(recipe.resolved)
        if own is not None and not study.get_trials(deepcopy=False) and not finish_only:
            params = {k.key: k.param(own[k.key]) for k in space.knobs}
            study.enqueue_trial(params, user_attrs={"hand_written": True}, skip_if_exists=True)
    setup = Setup(recipe, raw, scored, out, data, task, settings, margin)
    original_at = original_index(recipe)
    log.info(f"search: {recipe_file} over {len(space.knobs)} knobs -> {out} (study {name})")
    first = run_config(setup, trial_data(raw, original_at - 1), "original")
    if not first.score:
        raise UserError(f"the original did not run: {first.error or first.stopped}")
    setup.original = Stage(Path(first.score["stage"]), first.score["variant"])
    setup.floor = first.score["val_accuracy"] - max_drop / 100
    accuracy = first.score["val_accuracy"]
    log.info(f"original: validation accuracy {accuracy:.2%}; floor {setup.floor:.2%}")
    original_bytes = int(first.score["size_bytes"])
    if not finish_only:
        limits = Limits(trials, budget_s, seed)
        search_loop(study, setup, space, raw, objective, limits, original_bytes, progress)
    with hold(out / SEARCH_LOCK):  # written once: the last worker, or --finish

        def write() -> list[Path]:
            written = _finish(study, setup, space, raw, first.score, objective, max_drop)
            track_search(recipe.doc.tracking, out, recipe.name)  # trials as child runs
            return written

        return finish_once(study, out, keep, finish_only, write)


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
    rows = [_present(setup, space, raw, row) for row in rows]
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


Row = tuple[str, dict[str, Any], dict[str, Any], bool]  # label, values, score, on the front


def _present(setup: Any, space: Any, raw: dict[str, Any], row: Row) -> Row:
    """A front row whose steps an earlier `--keep front` reclaimed, run again (a resumed
    search whose front moved); its validation figures stay the ones the study recorded."""
    from compress.artifacts import finished_step
    from compress.search.trial import run_config, trial_data

    label, values, score, on_front = row
    if not values or finished_step(Path(score["stage"])) is not None:
        return row
    ran = run_config(setup, trial_data(space.apply(raw, values), setup.stage), "front")
    if not ran.score:
        raise UserError(f"{label}: its steps were reclaimed and do not run again: {ran.error}")
    return label, values, {**score, "stage": ran.score["stage"]}, on_front


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
