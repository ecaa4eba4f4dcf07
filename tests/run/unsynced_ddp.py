"""`compress` with gradient syncing switched off, for `tests/run/test_distributed.py` only.

Launched by `torchrun` in place of `python -m compress`: accelerate no longer
wraps the model in DistributedDataParallel, so each process steps on its own
batch's gradients. The test proves its weight comparison catches exactly this.
"""

from __future__ import annotations

from typing import Any

from accelerate import Accelerator

from compress.cli import main


def _not_wrapped(
    self: Accelerator, model: Any, device_placement: bool | None = None, **_: Any
) -> Any:
    """The model on this process's device, without the DDP wrapper that averages gradients."""
    return model.to(self.device)


Accelerator.prepare_model = _not_wrapped  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main())
