"""The calibration data post-training quantization and QAT both start from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from compress.passkit.context import PassConfig

if TYPE_CHECKING:
    from compress.passkit.context import PassContext

BATCH = 8  # rows per calibration batch


class CalibrationConfig(PassConfig):
    """How many training rows calibrate the INT8 ranges."""

    calibration_samples: int = Field(
        256, ge=1, le=100_000, description="training rows to calibrate on"
    )


def calibration_feeds(
    ctx: PassContext, processor: Any, samples: int
) -> list[dict[str, np.ndarray]]:
    """Batches of 8 random training rows (seeded) at the recipe's fixed shape, as NumPy feeds."""
    train = ctx.data.train.inputs
    rng = np.random.default_rng(ctx.seed)
    pick = rng.choice(len(train), size=min(samples, len(train)), replace=False)
    rows = [train[int(i)] for i in pick]
    return [
        ctx.task.fixed_batch(
            processor, rows[i : i + BATCH], len(rows[i : i + BATCH]), ctx.max_length
        )
        for i in range(0, len(rows), BATCH)
    ]
