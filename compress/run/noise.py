"""Third-party messages a run silences: import-time noise nobody can act on.

torchao, imported by transformers and NNCF, warns at import that its CUDA-only
extensions do not load on a CPU build of torch, and torch warns about its pytree
registrations. The loggers are raised to ERROR while a run (or a command) works, and
put back after, so a caller's own logging setup is left as it was.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

NOISY = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_backends() -> Iterator[None]:
    """Raise the `NOISY` loggers to ERROR for the duration."""
    loggers = [logging.getLogger(name) for name in NOISY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
