"""Where a search's study lives (`--storage`), and how a dead worker's trial is noticed.

    --storage postgresql://user:pass@db/search     any SQLAlchemy URL Optuna's RDBStorage takes
    --storage sqlite:///shared/search.db
    --storage journal:/shared/search.journal       Optuna's journal file on a shared filesystem
    (none)                                         the journal `OUT/study.journal`

Every storage records heartbeats: a running trial's worker writes one every
`heartbeat` seconds, and a trial silent for three of them is failed and asked
again with the same values (Optuna's `fail_stale_trials` and its retry
callback). A trial whose worker died on this machine is asked again at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import UserError

if TYPE_CHECKING:
    import optuna

STUDY = "study.journal"
DEFAULT_NAME = "search"  # the study's name in the default journal (one study per file)
HEARTBEAT_S = 30
WORKER = "worker"  # the user attribute naming the process that runs a trial: host:pid


def describe(url: str | None) -> str:
    """The storage URL with its password hidden (for messages and `study.json`)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url) if url else "journal in --out"


def _retry_callback() -> Any:
    from optuna import storages

    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    with warnings.catch_warnings():  # experimental in Optuna; the search relies on it
        warnings.simplefilter("ignore")
        return (retry or storages.RetryFailedTrialCallback)(max_retry=None)


def _journal(path: Path, heartbeat: int) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    class HeartbeatJournal(JournalStorage, BaseHeartbeat):
        """A journal whose running trials record heartbeats as a system attribute."""

        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(Exception):  # failed by another worker meanwhile
                self.set_trial_system_attr(trial_id, "heartbeat", time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now, grace = time.time(), 3 * heartbeat
            running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            stale = []
            for trial in running:
                started = trial.datetime_start.timestamp() if trial.datetime_start else now
                if now - float(trial.system_attrs.get("heartbeat", started)) > grace:
                    stale.append(trial._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int:
            return heartbeat

        def get_heartbeat_stale_trial_callback(self) -> Any:
            return _retry_callback()

    path.parent.mkdir(parents=True, exist_ok=True)
    return HeartbeatJournal(JournalFileBackend(str(path)))


def _rdb(given: str, heartbeat: int) -> optuna.storages.BaseStorage:
    import optuna

    url = given
    if url.startswith("postgresql://"):  # SQLAlchemy's default driver is psycopg2
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 120}  # workers wait for each other's writes
    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat}
    if "heartbeat_stale_trial_callback" in optuna.storages.RDBStorage.__init__.__code__.co_varnames:
        kwargs["heartbeat_stale_trial_callback"] = _retry_callback()
    else:  # Optuna before 4.9
        kwargs["failed_trial_callback"] = _retry_callback()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
    except ImportError as exc:
        raise UserError(
            f"--storage {describe(given)}: no database driver ({exc}); "
            "pip install 'edge-compress[distributed]' (PostgreSQL) or your database's driver"
        ) from None
    except Exception as exc:  # sqlalchemy's errors: bad URL, server down, refused login
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--storage {describe(given)}: cannot open the study ({first})") from None


def open_storage(
    url: str | None, out: Path, heartbeat: int = HEARTBEAT_S
) -> optuna.storages.BaseStorage:
    """The Optuna storage `--storage url` names (None: the journal in `out`), with heartbeats."""
    if url is None:
        return _journal(out / STUDY, heartbeat)
    if url.startswith("journal:"):
        path = url[len("journal:") :].removeprefix("//")
        if not path:
            raise UserError("--storage journal:PATH needs a file path, e.g. journal:/shared/s.log")
        return _journal(Path(path).expanduser(), heartbeat)
    if "://" not in url:
        raise UserError(
            f"--storage {url}: not a storage URL; use postgresql://..., mysql://..., "
            "sqlite:///FILE or journal:PATH"
        )
    return _rdb(url, heartbeat)


def study_name(url: str | None, recipe_name: str, key: str) -> str:
    """The study's name: `search` in the default journal, else the recipe's name and the
    fingerprint of recipe, space, objective and accuracy budget (one storage, many studies)."""
    return DEFAULT_NAME if url is None else f"compress-search-{recipe_name}-{key[:12]}"


STUDY_RECORD = "study.json"  # which study (storage and name) a search folder serves


def claim_folder(out: Path, url: str | None, name: str) -> None:
    """Record in the search folder `out` which study it serves; refuse another one."""
    from compress.artifacts import read_json, write_json_atomic

    record = {"storage": describe(url), "study": name}
    known = read_json(out / STUDY_RECORD)
    if not isinstance(known, dict):
        write_json_atomic(out / STUDY_RECORD, record)
    elif known.get("storage") != record["storage"]:
        raise UserError(
            f"{out} serves the study in {known.get('storage')}; "
            "give that --storage (or use another --out)"
        )
    elif known.get("study") != name:
        raise UserError(
            f"{out} holds a search of another recipe, space or objective; "
            "use another --out (or delete the folder to start over)"
        )


BOOT = "worker_boot"  # the user attribute telling machines of the same host name apart


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def boot_id() -> str:
    """This machine's boot id (Linux), else ''."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return ""


def _dead(worker: object, boot: object) -> bool:
    """Whether `worker` (host:pid) is a process of this machine that is gone (or this one,
    which runs no trial while it looks)."""
    host, _, pid = str(worker).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or (boot or "") != boot_id():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def retry_dead_trials(study: optuna.Study) -> int:
    """Fail the running trials whose worker died (on this machine at once, elsewhere once
    its heartbeats stopped) and ask for their values again; returns how many. Call it
    holding the search lock."""
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    retry = _retry_callback()
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if WORKER not in trial.user_attrs:
            # Its worker died while asking: the worker records itself right after its
            # values, under the search lock the caller holds now. Its values may be partial,
            # so it is failed without a retry and the next ask takes its place (with the
            # seed an uninterrupted search would have used).
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            continue
        if _dead(trial.user_attrs.get(WORKER), trial.user_attrs.get(BOOT)):
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                if storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    retry(study, storage.get_trial(trial._trial_id))
                    count += 1
    before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    after = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    return count + max(0, after - before)


def beat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record one heartbeat of `trial` now."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        storage.record_heartbeat(trial._trial_id)


@contextlib.contextmanager
def heartbeats(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat in a thread while the body runs."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield
