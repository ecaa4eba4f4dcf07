"""Several `compress search` workers on one study: PostgreSQL, SQLite and a journal file.

Each worker is a real `python -m compress search ... --storage URL` process, as
on another machine; the study is read back from the storage they shared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from compress.artifacts import finished_step
from compress.cli import main
from compress.data.loaders import load_dataset
from compress.search.storage import open_storage
from compress.search.trial import Setup, run_config, trial_data
from compress.search.workers import cores
from tests.conftest import write_labelled_csv
from tests.search.test_search import LEAN_RECIPE

SPACE = """\
passes[0].prune.ffn: [0.25, 0.5]
passes[2].quantize.cpu_mode: [dynamic, static]
"""
ROOT = Path(__file__).parents[2]
HANG_S = 600  # a guard against a hang, not a check of speed


@pytest.fixture(params=["postgresql", "sqlite", "journal"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return f"journal:{tmp_path / 'shared.journal'}"


@pytest.fixture()
def recipe_file(tmp_path: Path, tiny_model_dir: Path) -> Path:
    write_labelled_csv(tmp_path, 96, 5)
    path = tmp_path / "lean.yaml"  # no training: every trial is quick and deterministic
    path.write_text(LEAN_RECIPE.format(model=tiny_model_dir))
    (tmp_path / "space.yaml").write_text(SPACE)
    return path


def _worker(
    recipe: Path, out: Path, storage: str, trials: int, heartbeat: int = 10
) -> subprocess.Popen[bytes]:
    """A worker; a trial silent for 3 heartbeats is retried (kept long: the machine is busy)."""
    command = [sys.executable, "-m", "compress", "search", str(recipe), "--space",
               str(recipe.parent / "space.yaml"), "--objective", "size", "--max-drop", "100",
               "--stage", "quantize", "--trials", str(trials), "--out", str(out), "--storage",
               storage, "--threads", "1", "--heartbeat", str(heartbeat), "--keep", "all",
               "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = (out.parent / f"worker-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(worker: subprocess.Popen[bytes]) -> int:
    try:
        return worker.wait(timeout=HANG_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        pytest.fail(f"a worker ran for more than {HANG_S} s")


def _study(storage: str | None, out: Path) -> Any:
    import optuna

    name = json.loads((out / "study.json").read_text())["study"]
    return optuna.load_study(study_name=name, storage=open_storage(storage, out))


def _trials_so_far(storage: str, out: Path) -> list[Any]:
    """The study's trials, or none while the first worker has not created it yet."""
    try:
        return list(_study(storage, out).get_trials(deepcopy=False))
    except (FileNotFoundError, KeyError):
        return []


def _values(trial: Any) -> str:
    return json.dumps(trial.params, sort_keys=True)


def _reference_scores(recipe_file: Path, values: list[dict[str, Any]], out: Path) -> list[Any]:
    """What one process alone scores for each of `values` (validation accuracy, size)."""
    from compress.search.command import validate_search
    from compress.tasks import get_task

    recipe, raw, space, scored = validate_search(
        recipe_file, recipe_file.parent / "space.yaml", "quantize"
    )
    data = load_dataset(recipe.doc.data, recipe_file.parent, "texts")
    task = get_task("text-classification")
    setup = Setup(recipe, raw, scored, out, data, task, recipe.doc.benchmark, 1.0)
    scores = []
    for chosen in values:
        score = run_config(setup, trial_data(space.apply(raw, chosen), scored), "alone").score
        scores.append((score["val_accuracy"], score["size_bytes"], score["parameters"]))
    return scores


def _assert_steps_whole(out: Path) -> None:
    """Every stored step and every trial's step is complete and matches its manifest; no
    half-written folder is left; some step is shared by several trials."""
    assert not [p for p in out.rglob("*partial*")], "a half-written step was left"
    stored = [p for p in (out / "steps").iterdir()]
    assert stored and all(not p.name.startswith(".") for p in stored)
    for folder in stored:
        step = finished_step(folder)
        assert step is not None and step.changed_file() is None, folder
    users: dict[str, int] = defaultdict(int)
    for manifest in out.glob("trials/*/run/*/manifest.json"):
        step = finished_step(manifest.parent)
        assert step is not None and step.changed_file() is None, manifest.parent
        users[str(step.manifest["key"])] += 1
    assert max(users.values()) >= 2  # shared between trials (the input, the pruned model)


def test_two_workers_run_each_trial_once_and_score_as_one_process(
    recipe_file: Path, tmp_path: Path, storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "search"
    workers = [_worker(recipe_file, out, storage, trials=4) for _ in range(2)]
    assert [_wait(w) for w in workers] == [0, 0]
    study = _study(storage, out)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4  # the budget, no more, no less
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    assert sum(bool(t.user_attrs.get("hand_written")) for t in trials) == 1
    # the same values asked twice are run once: the other trial reuses the score
    groups: dict[str, list[Any]] = defaultdict(list)
    for trial in trials:
        groups[_values(trial)].append(trial)
    for group in groups.values():
        assert sum(not t.user_attrs["reused_score"] for t in group) == 1, group
    _assert_steps_whole(out)
    # each trial scores what one process alone scores for its values
    values = [t.user_attrs["values"] for t in trials]
    alone = _reference_scores(recipe_file, values, tmp_path / "alone")
    for trial, expected in zip(trials, alone, strict=True):
        score = trial.user_attrs["score"]
        assert (score["val_accuracy"], score["size_bytes"], score["parameters"]) == expected
        assert trial.values[0] == score["val_accuracy"]
    # the last worker wrote the front once
    assert len(json.loads((out / "trials.json").read_text())) == 4
    assert json.loads((out / "pareto.json").read_text())["trials"]["scored"] == 4
    # a worker started with another space is refused in one line, before it runs anything
    other = tmp_path / "other.yaml"
    other.write_text(SPACE.replace("[0.25, 0.5]", "[0.25, 0.75]"))
    capsys.readouterr()
    command = ["search", str(recipe_file), "--space", str(other), "--objective", "size",
               "--max-drop", "100", "--stage", "quantize", "--trials", "4", "--out", str(out),
               "--storage", storage]  # fmt: skip
    assert main(command) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out} holds a search of another recipe, space or objective; "
        "use another --out (or delete the folder to start over)"
    )


def test_a_worker_killed_mid_trial_has_its_trial_retried(
    recipe_file: Path, tmp_path: Path, storage: str
) -> None:
    out = tmp_path / "search"
    doomed, other = (_worker(recipe_file, out, storage, trials=4) for _ in range(2))
    deadline = time.monotonic() + HANG_S
    killed = None
    while killed is None:
        assert doomed.poll() is None, "the worker ended before it was killed"
        assert time.monotonic() < deadline, "the worker ran no trial"
        for trial in _trials_so_far(storage, out):
            if trial.state.name == "RUNNING" and trial.user_attrs.get("worker", "").endswith(
                f":{doomed.pid}"
            ):
                os.kill(doomed.pid, signal.SIGKILL)  # no cleanup runs
                killed = trial
                break
        time.sleep(0.1)
    doomed.wait(timeout=30)
    assert _wait(other) == 0
    trials = _study(storage, out).get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 4 and states.count("FAIL") == 1
    failed = next(t for t in trials if t.state.name == "FAIL")
    assert failed.number == killed.number
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert [t.state.name for t in retried] == ["COMPLETE"]
    assert failed.params and retried[0].params == failed.params  # asked again, same values
    assert (out / "pareto.json").is_file()
    _assert_steps_whole(out)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_silent_trial_of_another_machine_is_retried_after_its_heartbeats(
    recipe_file: Path, tmp_path: Path, storage: str
) -> None:
    out = tmp_path / "search"
    assert _wait(_worker(recipe_file, out, storage, trials=1)) == 0
    study = _study(storage, out)
    # a worker elsewhere took a trial, beat once, and went silent (its machine was lost)
    study.enqueue_trial({"passes[0].prune.ffn": 0.5, "passes[2].quantize.cpu_mode": "static"})
    lost = study.ask()
    lost.suggest_categorical("passes[0].prune.ffn", [0.25, 0.5])  # as a worker does at once
    lost.suggest_categorical("passes[2].quantize.cpu_mode", ["dynamic", "static"])
    lost.set_user_attr("worker", "another-machine:4242")
    study._storage.record_heartbeat(lost._trial_id)
    assert _wait(_worker(recipe_file, out, storage, trials=2, heartbeat=1)) == 0
    trials = _study(storage, out).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].system_attrs["failed_trial"] == lost.number
    expected = {"passes[0].prune.ffn": 0.5, "passes[2].quantize.cpu_mode": "static"}
    assert trials[1].params == trials[2].params == expected
    assert trials[2].user_attrs["worker"] != "another-machine:4242"


def test_optuna_dashboard_serves_a_finished_search(recipe_file: Path, tmp_path: Path) -> None:
    """`--workers 2` runs two workers on the default journal; optuna-dashboard, pointed at
    it, lists the trials with the values the search recorded (what a user watching sees)."""
    import socket
    import urllib.request

    pytest.importorskip("optuna_dashboard", reason="pip install 'edge-compress[distributed]'")
    out = tmp_path / "search"
    command = [sys.executable, "-m", "compress", "search", str(recipe_file), "--space",
               str(recipe_file.parent / "space.yaml"), "--objective", "size", "--stage",
               "quantize", "--trials", "3", "--out", str(out), "--workers", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    threads = max(1, cores() // 2)  # this machine's cores, split between the workers
    assert f"search: 2 workers x {threads} threads" in ran.stderr  # progress is logged
    study = _study(None, out)  # the default storage: the journal in --out
    assert len(study.trials) == 3 and len({t.user_attrs["worker"] for t in study.trials}) == 2
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-c", "from optuna_dashboard._cli import main; main()",
               str(out / "study.journal"), "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as reply:
                    studies = json.loads(reply.read())["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, "optuna-dashboard exited"
                assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.5)
        listed = next(s for s in studies if s["study_name"] == study.study_name)
        with urllib.request.urlopen(f"{base}/api/studies/{listed['study_id']}", timeout=30) as r:
            detail = json.loads(r.read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = {t["number"]: t for t in detail["trials"]}
    assert sorted(served) == [t.number for t in study.trials]
    for trial in study.trials:
        attrs = {a["key"]: a["value"] for a in served[trial.number]["user_attrs"]}
        assert float(attrs["val_accuracy"]) == trial.user_attrs["val_accuracy"]
        assert float(attrs["size_ratio"]) == trial.user_attrs["size_ratio"]
        assert served[trial.number]["state"] == trial.state.name.capitalize()


def test_workers_count_every_trial_and_every_second_against_the_limits() -> None:
    """A worker asks while finished + running + queued trials are under --trials and the time
    spent (running trials' so far, at least the typical trial's) leaves room for one more;
    it waits while another worker's trial runs, and is done once none does."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from compress.search.study import Limits, next_move

    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(2):
        study.add_trial(
            create_trial(
                values=[0.9, 0.5],
                params={"k": 1},
                distributions={"k": CategoricalDistribution([1, 2])},
                user_attrs={"seconds": 100.0},
            )
        )
    assert next_move(study, Limits(3, None)) == "ask"
    assert next_move(study, Limits(2, None)) == "done"
    assert next_move(study, Limits(None, 250.0)) == "done"  # 200 s spent + a typical 100 s
    assert next_move(study, Limits(None, 301.0)) == "ask"
    study.ask()  # another worker's trial, just started: counted, and expected to take 100 s
    assert next_move(study, Limits(3, None)) == "wait"
    assert next_move(study, Limits(4, None)) == "ask"
    assert next_move(study, Limits(None, 350.0)) == "wait"  # 200 + 100 expected + 100 > 350
    assert next_move(study, Limits(None, 401.0)) == "ask"
    study.enqueue_trial({"k": 2})  # a retried trial is run even when the count is reached
    assert next_move(study, Limits(3, None)) == "ask"
    running = study.get_trials(states=(TrialState.RUNNING,))[0]
    study.tell(running.number, state=TrialState.FAIL)  # stopped, not ended: not counted
    study.ask()  # pops the queued trial
    assert next_move(study, Limits(3, None)) == "wait"
    assert next_move(study, Limits(4, None)) == "ask"
