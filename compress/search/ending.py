"""How a search ends: its outputs written once, by the last worker or by `--finish`.

The outputs (`compress.search.outputs`) are written holding the search lock,
only when no trial of any worker still runs, and only once for a given state
of the study: `.finished.json` records that state, so a second worker that
ends at the same time, or `--finish` run again, returns the files as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from compress.artifacts import hash_json, read_json, write_json_atomic
from compress.errors import UserError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

FINISHED = ".finished.json"  # the study state the outputs were written for


def finish_once(
    study: optuna.Study,
    out: Path,
    keep: Literal["front", "all"],
    finish_only: bool,
    write: Callable[[], list[Path]],
) -> list[Path]:
    """`write()` the outputs unless a trial still runs (then []) or they were written for this
    state of the study (then the files as they are); with `keep="front"`, reclaim the steps
    only other trials used. Call it holding the search lock."""
    from optuna.trial import TrialState

    from compress.search.reclaim import reclaim

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        message = f"{len(running)} trials still run in other workers; the last one writes the front"
        if finish_only:
            raise UserError(message + " (or run --finish once they end)")
        log.info(f"search: {message}")
        return []
    state = [(t.number, t.state.name) for t in study.get_trials(deepcopy=False)]
    stamp = hash_json({"trials": state, "keep": keep})
    done = read_json(out / FINISHED)
    if isinstance(done, dict) and done.get("stamp") == stamp:
        written = [Path(p) for p in done.get("written", [])]
        if all(p.exists() for p in written):
            log.info("search: the front of this study is written already")
            return written
    written = write()
    freed = None
    if keep == "front":
        pareto = read_json(out / "pareto.json")
        rows = [pareto["original"], *pareto["rows"]]
        freed, kept = reclaim(out, {Path(r["folder"]).name for r in rows})
        log.info(f"search: --keep front freed {freed / 1e6:.1f} MB ({kept} stored steps kept)")
    record = {"stamp": stamp, "written": [str(p) for p in written], "freed_bytes": freed}
    write_json_atomic(out / FINISHED, record)
    return written
