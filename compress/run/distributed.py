"""Several processes, one run: who is who, and how they keep in step.

`torchrun` and `accelerate launch` start one process per GPU (or CPU worker)
and describe it in the environment: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`. Rank 0
is the main process: it alone writes the run folder. Training passes run on
every rank (accelerate splits the batches); every other pass runs on rank 0
while the others wait, then they read its result.

Keeping in step is done with agreements, not bare barriers: each rank says
whether its part succeeded, so when one fails the others stop with an error
instead of waiting for it. A rank that dies inside a collective (mid-training)
cannot say so; `torchrun` then stops its node's processes, and on other nodes
the collective fails after `COMPRESS_DIST_TIMEOUT` seconds (default 2 hours).

Example, rank 0 writes a file the others then read:

    with main_first("writing the labels"):
        if is_main():
            path.write_text(...)
        labels = path.read_text()
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from compress.errors import PeerFailed

DEFAULT_TIMEOUT_S = 7200


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def world_size() -> int:
    """How many processes take part in this run (1 when not launched by torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's index among all processes of the run (0 is the main one)."""
    return _env_int("RANK", 0)


def local_rank() -> int:
    """This process's index on its own machine (the GPU it uses)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Whether this process writes the run folder and prints."""
    return rank() == 0


def _initialized() -> bool:
    if world_size() == 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join the run's process group for the duration (a no-op with one process).

    The group uses NCCL for CUDA tensors and gloo for CPU ones (gloo alone
    without CUDA). `accelerate.Accelerator` finds it initialised and uses it.
    A group made here is destroyed on exit; one made by the caller is kept.
    """
    if world_size() == 1 or _initialized():
        yield
        return
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    timeout = timedelta(seconds=_env_int("COMPRESS_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cuda:nccl,cpu:gloo"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_ok(ok: bool) -> bool:
    """True when every rank passes True; every rank must call it (a collective)."""
    if not _initialized():
        return ok
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def barrier() -> None:
    """Wait until every rank gets here."""
    all_ok(True)


@contextlib.contextmanager
def together(what: str) -> Iterator[None]:
    """Every rank runs the body at once; all go on only if all succeeded."""
    try:
        yield
    except BaseException:
        all_ok(False)
        raise
    if not all_ok(True):
        raise PeerFailed(f"another process failed while {what} (see its output)")


@contextlib.contextmanager
def main_first(what: str) -> Iterator[None]:
    """Rank 0 runs the body first, then the other ranks (e.g. to read what it wrote).

    If rank 0 fails, the others never run the body and raise `PeerFailed`; if
    another rank fails, rank 0 raises `PeerFailed` after its body.
    """
    if not _initialized():
        yield
        return
    main = is_main()
    if not main and not all_ok(True):  # rank 0's turn: its result says whether to go on
        raise PeerFailed(f"the main process (rank 0) failed while {what} (see its output)")
    try:
        yield
    except BaseException:
        all_ok(False)
        raise
    if main:
        all_ok(True)  # rank 0's turn ends: the others go
    if not all_ok(True):
        raise PeerFailed(f"another process failed while {what} (see its output)")


@contextlib.contextmanager
def quiet_unless_main() -> Iterator[None]:
    """Keep this process's messages (the `compress` logger below WARNING, and its stdout) to
    itself unless it is rank 0; warnings and errors still show."""
    if is_main():
        yield
        return
    logger = logging.getLogger("compress")
    level = logger.level
    logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
        sys.stdout.flush()
    finally:
        logger.setLevel(level)
