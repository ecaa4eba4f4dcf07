"""A worker that dies while asking leaves a trial with partial values: it is not retried."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from compress.search.storage import WORKER, retry_dead_trials


def test_a_trial_whose_worker_died_mid_ask_is_failed_not_retried(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(storage=storage, study_name="search")
    partial = study.ask()
    partial.suggest_float("ffn", 0.25, 0.75, step=0.25)  # died before its second value
    complete = study.ask()
    complete.suggest_float("ffn", 0.25, 0.75, step=0.25)
    complete.set_user_attr(WORKER, "a-machine-that-is-not-this-one:1")  # still beating
    retry_dead_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {partial.number: TrialState.FAIL, complete.number: TrialState.RUNNING}
