"""`compress search`: Optuna's multi-objective search over a recipe's knobs.

Objectives: validation accuracy (up) and, by `objective`, the batch latency
ratio to the original, the size ratio, or both (down); a trial whose
validation accuracy is more than `max_drop` points below the original's is
infeasible (an Optuna constraint). Latency is a ratio timed interleaved with
the original inside each trial, so trials of several workers stay comparable.

The study lives in a storage (`compress.search.storage`; by default
`OUT/study.journal`) that any number of workers share: holding the search
folder's lock, a worker counts the trials finished, running and queued
against `--trials` / `--budget` (every worker's time), asks for the next one,
and records who runs it. A search stopped at any point resumes with the same
command. A trial that was running is asked again with the same values (its
finished steps and, when it got that far, its score are reused), and the
sampler is seeded by the number of trials finished, so a resumed
single-worker search samples what an uninterrupted one would have.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from compress.artifacts import hash_json
from compress.errors import UserError
from compress.search.space import Space
from compress.search.trial import Outcome, Setup, run_config, trial_data

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

Objective = Literal["latency", "size", "both"]
HAND_WRITTEN = "hand_written"


@dataclass(frozen=True)
class Limits:
    """When a search stops: after `trials` finished trials, or once `budget_s` is spent."""

    trials: int | None
    budget_s: float | None
    seed: int = 0

    def done(self, finished: int, spent: float, typical: float) -> bool:
        if self.trials is not None and finished >= self.trials:
            return True
        return self.budget_s is not None and spent + typical > self.budget_s


def directions(objective: Objective) -> list[str]:
    return ["maximize"] + ["minimize"] * (2 if objective == "both" else 1)


def objective_values(
    score: dict[str, Any], original_bytes: int, objective: Objective
) -> list[float]:
    """What Optuna optimises: validation accuracy, then latency and/or size as ratios."""
    latency = float(score["latency_ratio"])
    size = float(score["size_bytes"]) / original_bytes
    picked = {"latency": [latency], "size": [size], "both": [latency, size]}[objective]
    return [float(score["val_accuracy"]), *picked]


def open_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    out: Path,
    objective: Objective,
    fingerprint: dict[str, Any],
) -> optuna.Study:
    """The search's study `name` in `storage`, created or resumed (refused when it searched
    something else)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE, constraints and heartbeats are marked experimental; the search uses them
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # a worker asks and tells (so that it counts trials under the search lock) and records
    # heartbeats itself, which Optuna warns about
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    study = optuna.create_study(
        storage=storage, study_name=name, directions=directions(objective), load_if_exists=True
    )
    key = hash_json(fingerprint)
    known = study.user_attrs.get("fingerprint")
    if known is None:
        study.set_user_attr("fingerprint", key)
        study.set_user_attr("settings", fingerprint)
    elif known != key:
        raise UserError(
            f"{out} holds a search of another recipe, space or objective; "
            "use another --out (or delete the folder to start over)"
        )
    return study


def sampler(seed: int, constrained: bool) -> optuna.samplers.BaseSampler:
    import optuna

    def constraints(trial: optuna.trial.FrozenTrial) -> list[float]:
        return [float(trial.user_attrs.get("constraint", 1.0))]

    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=5,
        multivariate=True,
        constant_liar=True,  # other workers' running trials: sample away from them
        constraints_func=constraints if constrained else None,
    )


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an end: scored, stopped early, or refused by a pass (not the ones
    a stopped search left running, which are asked again)."""
    from optuna.trial import TrialState

    ended = (TrialState.COMPLETE, TrialState.PRUNED)
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in ended or (t.state == TrialState.FAIL and "error" in t.user_attrs)
    ]


def spent_seconds(study: optuna.Study) -> list[float]:
    """Seconds each trial took, every worker's; a running trial's so far."""
    from optuna.trial import TrialState

    now = time.time()
    spent = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and trial.datetime_start is not None:
            spent.append(max(0.0, now - trial.datetime_start.timestamp()))
        else:
            spent.append(float(trial.user_attrs.get("seconds", 0.0)))
    return spent


Next = Literal["ask", "wait", "done"]


def next_move(study: optuna.Study, limits: Limits) -> Next:
    """Whether a worker asks for a trial, waits for the running ones (one may be retried),
    or is done. Call it holding the search lock, so that workers count the same trials."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    ended = [float(t.user_attrs.get("seconds", 0)) for t in finished(study)]
    typical = statistics.median(s for s in ended if s > 0) if any(ended) else 0.0
    seconds = spent_seconds(study)
    # a running trial is expected to take the typical time, at least
    expected = sum(seconds) + sum(
        max(0.0, typical - s)
        for t, s in zip(trials, seconds, strict=True)
        if t.state == TrialState.RUNNING
    )
    counted = len(finished(study)) + running + waiting
    if waiting and (limits.budget_s is None or expected < limits.budget_s):
        return "ask"  # an enqueued trial (hand-written, or retried) is part of the count
    if not limits.done(counted, expected, typical):
        return "ask"
    return "wait" if running else "done"


def search_loop(
    study: optuna.Study,
    setup: Setup,
    space: Space,
    raw: dict[str, Any],
    objective: Objective,
    limits: Limits,
    original_bytes: int,
    progress: bool,
    poll_s: float = 5.0,
) -> None:
    """Ask, run and tell trials until `limits` say stop and no other worker's trial runs."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    from compress.search.locks import SEARCH_LOCK, hold
    from compress.search.storage import (
        BOOT,
        WORKER,
        beat,
        boot_id,
        heartbeats,
        retry_dead_trials,
        this_worker,
    )

    with tqdm(total=limits.trials, disable=not progress, unit="trial") as bar:
        while True:
            with hold(setup.out / SEARCH_LOCK):
                if retry_dead_trials(study):
                    log.info(
                        "retrying: a trial whose worker stopped is asked again with its values"
                    )
                move = next_move(study, limits)
                if move == "ask":
                    done = finished(study)
                    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                    seed = limits.seed + len(done) + 7919 * len(running)
                    study.sampler = sampler(seed, setup.floor is not None)
                    trial = study.ask()
                    beat(study, trial)  # before anything slow: no worker takes it for silent
                    values = {knob.key: knob.suggest(trial) for knob in space.knobs}
                    trial.set_user_attr(BOOT, boot_id())
                    trial.set_user_attr(WORKER, this_worker())  # its values are recorded now
            if move == "done":
                break
            if move == "wait":
                time.sleep(poll_s)
                continue
            with heartbeats(study, trial):
                data = trial_data(space.apply(raw, values), setup.stage)
                bar.set_description(f"trial {trial.number}")
                outcome = run_config(setup, data, f"trial-{trial.number:03d}")
            try:
                _record(trial, outcome, values, setup, original_bytes)
                if outcome.score:
                    study.tell(trial, objective_values(outcome.score, original_bytes, objective))
                else:
                    state = TrialState.PRUNED if outcome.stopped else TrialState.FAIL
                    study.tell(trial, state=state)
            except UpdateFinishedTrialError:  # its heartbeats were missed: a retry runs it
                log.info(f"trial {trial.number} was given up as silent; its retry counts instead")
            bar.n = len(finished(study))
            bar.set_postfix_str(_status(study, limits, objective))


def _record(
    trial: optuna.Trial, outcome: Outcome, values: dict[str, Any], setup: Setup, base: int
) -> None:
    """The trial's user attributes (what optuna-dashboard shows; see the README)."""
    trial.set_user_attr("values", values)
    trial.set_user_attr("folder", str(outcome.folder.relative_to(setup.out)))
    trial.set_user_attr("seconds", round(outcome.seconds, 1))
    trial.set_user_attr("reused_score", outcome.reused)
    if outcome.score:
        trial.set_user_attr("score", outcome.score)
        trial.set_user_attr("val_accuracy", float(outcome.score["val_accuracy"]))
        trial.set_user_attr("latency_ratio", float(outcome.score["latency_ratio"]))
        trial.set_user_attr("size_ratio", float(outcome.score["size_bytes"]) / base)
        floor = setup.floor if setup.floor is not None else 0.0
        trial.set_user_attr("constraint", floor - float(outcome.score["val_accuracy"]))
    if outcome.stopped:
        trial.set_user_attr("stopped", outcome.stopped)
        trial.set_user_attr("stopped_at", outcome.stopped.split(":", 1)[0])
        trial.set_user_attr("constraint", 1.0)
    if outcome.error:
        trial.set_user_attr("error", outcome.error)


def _status(study: optuna.Study, limits: Limits, objective: Objective) -> str:
    front = study.best_trials
    text = f"front {len(front)}"
    if front:
        best = min(front, key=lambda t: t.values[1])
        what = "smaller" if objective == "size" else "faster"
        text += f", best {best.values[0]:.1%} at {1 / best.values[1]:.2f}x {what}"
    if limits.budget_s is not None:
        left = max(0.0, limits.budget_s - sum(spent_seconds(study)))
        text += f", {left / 60:.0f} min left"
    return text
