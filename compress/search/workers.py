"""`compress search ... --workers N`: N worker processes on this machine, one study.

Each worker is the same `compress search` command (what another machine would
run), with `--threads` set so that N x threads fits this machine's cores. The
workers share the study (`--storage`, default the journal in `--out`) and the
search folder; the last one to finish writes the front.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: int | None) -> int:
    """`threads`, else this machine's cores shared by `workers` (at least one each)."""
    return threads if threads else max(1, cores() // workers)


def worker_argv(args: argparse.Namespace, out: Path, threads: int) -> list[str]:
    """The `compress search` arguments of one worker (no --workers)."""
    argv = [
        "search", str(args.recipe), "--space", str(args.space), "--objective", args.objective,
        "--max-drop", repr(args.max_drop), "--margin", repr(args.margin),
        "--seed", str(args.seed), "--out", str(out), "--keep", args.keep,
        "--threads", str(threads), "--heartbeat", str(args.heartbeat), "--quiet",
    ]  # fmt: skip
    if args.budget is not None:
        argv += ["--budget", f"{args.budget}s"]
    if args.trials is not None:
        argv += ["--trials", str(args.trials)]
    if args.stage is not None:
        argv += ["--stage", str(args.stage)]
    if args.storage is not None:
        argv += ["--storage", args.storage]
    return argv


def run_workers(args: argparse.Namespace, out: Path) -> int:
    """Start `args.workers` workers and wait for all; the exit code is the first failure's."""
    threads = threads_per_worker(args.workers, args.threads)
    argv = [sys.executable, "-m", "compress", *worker_argv(args, out, threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log.info(f"search: {args.workers} workers x {threads} threads -> {out}")
    workers = [subprocess.Popen(argv, env=env) for _ in range(args.workers)]
    try:
        codes = [worker.wait() for worker in workers]
    except KeyboardInterrupt:  # stop them all; the study resumes with the same command
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait()
        raise
    failed = [code for code in codes if code]
    if failed:
        log.warning(f"search: {len(failed)} of {len(codes)} workers failed (exit codes {failed})")
    return next((code if code > 0 else 1 for code in failed), 0)  # killed by a signal: 1
