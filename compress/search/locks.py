"""Locks that let several search workers share one search folder.

    OUT/.search.lock          held briefly: deciding and asking the next trial, the hand-written
                              trial's enqueue, writing the front at the end
    OUT/trials/<id>/.lock     held while a trial runs: a second trial with the same values waits,
                              then reuses its score

They are `flock` locks on files in the search folder (NFS v4 and most shared
filesystems honour them); the operating system releases them when a worker
dies, even by SIGKILL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SEARCH_LOCK = ".search.lock"
TRIAL_LOCK = ".lock"


@contextmanager
def hold(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path`, waiting for it (no locking off POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
