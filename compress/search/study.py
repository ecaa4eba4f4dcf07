"""`compress search`: Optuna's multi-objective search over a recipe's knobs.

Objectives: validation accuracy (up) and, by `objective`, the batch latency
ratio to the original, the size ratio, or both (down); a trial whose
validation accuracy is more than `max_drop` points below the original's is
infeasible (an Optuna constraint). Trials run one at a time on this machine,
so the latency they measure is comparable.

The study lives in `OUT/study.journal` (Optuna's journal storage): a search
stopped at any point resumes with the same command. A trial that was running
is asked again with the same values (its finished steps and, when it got that
far, its score are reused), and the sampler is seeded by the number of trials
finished, so a resumed search samples what an uninterrupted one would have.
"""

from __future__ import annotations

import statistics
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

Objective = Literal["latency", "size", "both"]
STUDY = "study.journal"
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


def open_study(out: Path, objective: Objective, fingerprint: dict[str, Any]) -> optuna.Study:
    """The search's study in `out`, created or resumed (refused when it searched something else)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE and constraints are marked experimental; the search relies on both
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = JournalStorage(JournalFileBackend(str(out / STUDY)))
    study = optuna.create_study(
        storage=storage, study_name="search", directions=directions(objective), load_if_exists=True
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
        constraints_func=constraints if constrained else None,
    )


def requeue_interrupted(study: optuna.Study) -> int:
    """Fail the trials a stopped search left running, and ask for their values again."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs=dict(trial.user_attrs))
    return len(stale)


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
    return [float(t.user_attrs.get("seconds", 0.0)) for t in study.get_trials(deepcopy=False)]


def search_loop(
    study: optuna.Study,
    setup: Setup,
    space: Space,
    raw: dict[str, Any],
    objective: Objective,
    limits: Limits,
    original_bytes: int,
    progress: bool,
) -> None:
    """Ask, run and tell trials until `limits` say stop."""
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    done = finished(study)
    with tqdm(total=limits.trials, initial=len(done), disable=not progress, unit="trial") as bar:
        while True:
            done = finished(study)
            seconds = spent_seconds(study)
            typical = statistics.median(s for s in seconds if s > 0) if any(seconds) else 0.0
            if limits.done(len(done), sum(seconds), typical):
                break
            study.sampler = sampler(limits.seed + len(done), setup.floor is not None)
            trial = study.ask()
            values = {knob.key: knob.suggest(trial) for knob in space.knobs}
            data = trial_data(space.apply(raw, values), setup.stage)
            bar.set_description(f"trial {trial.number}")
            outcome = run_config(setup, data, f"trial-{trial.number:03d}")
            _record(trial, outcome, values, setup)
            if outcome.score:
                study.tell(trial, objective_values(outcome.score, original_bytes, objective))
            else:
                state = TrialState.PRUNED if outcome.stopped else TrialState.FAIL
                study.tell(trial, state=state)
            bar.update(1)
            bar.set_postfix_str(_status(study, limits, objective))


def _record(trial: optuna.Trial, outcome: Outcome, values: dict[str, Any], setup: Setup) -> None:
    trial.set_user_attr("values", values)
    trial.set_user_attr("folder", str(outcome.folder.relative_to(setup.out)))
    trial.set_user_attr("seconds", round(outcome.seconds, 1))
    if outcome.score:
        trial.set_user_attr("score", outcome.score)
        floor = setup.floor if setup.floor is not None else 0.0
        trial.set_user_attr("constraint", floor - float(outcome.score["val_accuracy"]))
    if outcome.stopped:
        trial.set_user_attr("stopped", outcome.stopped)
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
