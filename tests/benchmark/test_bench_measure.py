from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from compress.benchmark import measure
from compress.benchmark.measure import LatencyStats, measure_latency


def _clock(durations_ms: list[float]) -> Iterator[float]:
    """perf_counter values: each timed call takes the next duration."""
    now = 100.0
    for d in durations_ms:
        yield now
        now += d / 1000.0
        yield now
        now += 1.0  # time between calls does not count


def test_measure_latency_counts_calls_and_computes_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    durations = [float(x) for x in [7, 1, 10, 3, 5, 2, 9, 4, 8, 6]]
    ticks = _clock(durations)
    monkeypatch.setattr(measure, "perf_counter", lambda: next(ticks))
    calls = []
    stats = measure_latency(lambda: calls.append(1), warmup=3, repetitions=10)
    assert len(calls) == 13
    assert stats.repetitions == 10
    assert stats.p50_ms == pytest.approx(5.5, abs=1e-6)
    assert stats.p90_ms == pytest.approx(9.1, abs=1e-6)
    assert stats.p99_ms == pytest.approx(9.91, abs=1e-6)
    assert stats.mean_ms == pytest.approx(5.5, abs=1e-6)
    assert stats.std_ms == pytest.approx(float(np.std(durations, ddof=1)), abs=1e-6)
    assert stats.throughput(8) == pytest.approx(8 * 1000 / 5.5, rel=1e-6)


def test_measure_latency_real_clock_orders_percentiles() -> None:
    stats = measure_latency(lambda: sum(range(200)), warmup=2, repetitions=25)
    assert isinstance(stats, LatencyStats)
    assert stats.repetitions == 25
    assert 0 <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms
    assert stats.std_ms >= 0
    assert set(stats.to_json()) == {
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "std_ms",
        "repetitions",
        "round_p50_ms",
    }
    assert stats.round_p50_ms == ()  # one function timed alone has no interleaved rounds


def test_measure_latency_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        measure_latency(lambda: None, warmup=0, repetitions=0)
    with pytest.raises(ValueError):
        measure_latency(lambda: None, warmup=-1, repetitions=5)


def test_measure_interleaved_blocks_rotate_and_count() -> None:
    from compress.benchmark.measure import measure_interleaved

    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    stats = measure_interleaved(fns, warmup=1, repetitions=5, block=2, settle=1)
    assert all(s.repetitions == 5 for s in stats.values())
    assert calls[:2] == ["a", "b"]  # warm-up
    # rounds of (1 settle + up to 2 timed) calls per function, order rotating
    assert "".join(calls[2:]) == "aaabbb" + "bbbaaa" + "aabb"
    with pytest.raises(ValueError):
        measure_interleaved(fns, warmup=0, repetitions=0)


def test_measure_interleaved_keeps_each_rounds_p50(monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.benchmark.measure import measure_interleaved, round_ratios

    # timed calls in schedule order: round 0 a a b b, round 1 b b a a, round 2 a b
    ticks = _clock([1, 3, 2, 2, 4, 4, 5, 7, 9, 8])
    monkeypatch.setattr(measure, "perf_counter", lambda: next(ticks))
    stats = measure_interleaved({"a": lambda: None, "b": lambda: None}, 0, 5, block=2, settle=0)
    assert stats["a"].round_p50_ms == pytest.approx((2.0, 6.0, 9.0))
    assert stats["b"].round_p50_ms == pytest.approx((2.0, 4.0, 8.0))
    assert round_ratios(stats["a"].round_p50_ms, stats["b"].round_p50_ms) == pytest.approx(
        [1.0, 1.5, 1.125]
    )
    assert round_ratios([1.0, 2.0], [1.0]) == []  # not timed in the same rounds
