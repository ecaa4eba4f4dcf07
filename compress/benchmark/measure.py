"""Latency measurement: single functions, or several timed in interleaved blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from time import perf_counter
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one call, in milliseconds, over `repetitions` timed calls."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    repetitions: int
    round_p50_ms: tuple[float, ...] = ()
    """p50 of each interleaved round (`measure_interleaved`), in round order"""

    def throughput(self, batch_size: int) -> float:
        """Examples per second at this batch size (from the mean latency)."""
        return batch_size * 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(fn: Callable[[], object], warmup: int, repetitions: int) -> LatencyStats:
    """Call `fn` `warmup` times untimed, then time `repetitions` calls one by one."""
    if warmup < 0 or repetitions < 1:
        raise ValueError(f"need warmup >= 0 and repetitions >= 1 (got {warmup}, {repetitions})")
    for _ in range(warmup):
        fn()
    times = np.empty(repetitions, dtype=np.float64)
    for i in range(repetitions):
        start = perf_counter()
        fn()
        times[i] = perf_counter() - start
    return _stats(times * 1000.0, repetitions)


BLOCK = 20
"""Timed calls of one function before the next one's turn (`measure_interleaved`)."""
SETTLE = 3
"""Untimed calls that start each block."""
SCHEDULE = (
    f"interleaved: blocks of {BLOCK} timed calls per stage in turn ({SETTLE} untimed "
    "calls first), order rotating"
)


def measure_interleaved(
    fns: dict[str, Callable[[], object]],
    warmup: int,
    repetitions: int,
    block: int = BLOCK,
    settle: int = SETTLE,
) -> dict[str, LatencyStats]:
    """Time several functions in interleaved blocks: `block` timed calls of each in turn.

    A machine that slows down or gets busy mid-measurement then affects every
    function alike, so ratios between them stay meaningful on shared machines.
    Each block starts with `settle` untimed calls: runtimes keep their thread
    pools spinning for a moment after a call, and a call made right after
    another runtime's would otherwise pay for that. The order rotates every
    round so none is always first after another.
    """
    if warmup < 0 or repetitions < 1 or block < 1 or settle < 0:
        raise ValueError(f"need warmup >= 0 and repetitions >= 1 (got {warmup}, {repetitions})")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    per_round: dict[str, list[float]] = {name: [] for name in names}
    rounds = -(-repetitions // block)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(settle):
                fns[name]()
            this_round = []
            for _ in range(min(block, repetitions - len(times[name]))):
                start = perf_counter()
                fns[name]()
                this_round.append(perf_counter() - start)
            times[name] += this_round
            per_round[name].append(float(np.median(this_round)) * 1000.0)
    return {
        name: _stats(np.asarray(t) * 1000.0, repetitions, tuple(per_round[name]))
        for name, t in times.items()
    }


def round_ratios(reference: Sequence[float], mine: Sequence[float]) -> list[float]:
    """`reference / mine` round by round (a speedup per round); empty unless both were
    timed in the same interleaved rounds."""
    if len(reference) != len(mine) or len(reference) < 2:
        return []
    return [r / m for r, m in zip(reference, mine, strict=True) if m > 0]


def _stats(ms: np.ndarray, repetitions: int, rounds: tuple[float, ...] = ()) -> LatencyStats:
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return LatencyStats(
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if repetitions > 1 else 0.0,
        repetitions=repetitions,
        round_p50_ms=rounds,
    )
