"""Embedding scores against brute-force references, hand-computed cases and synthetic data."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from compress.benchmark import embedding_scores as scores
from compress.benchmark.embedding_scores import (
    embedding_scores,
    fidelity,
    knn_accuracy,
    knn_predict,
    majority_baseline,
    neighbour_recall,
)


def _cos(u: list[float], v: list[float]) -> float:
    nu = math.sqrt(sum(x * x for x in u))
    nv = math.sqrt(sum(x * x for x in v))
    if nu == 0 or nv == 0:
        return 0.0
    return sum(x * y for x, y in zip(u, v, strict=True)) / (nu * nv)


def _nearest(query: list[float], rows: list[list[float]], k: int, skip: int = -1) -> list[int]:
    """The k rows most similar to `query` by (-cosine, index), row `skip` left out."""
    ranked = sorted((-_cos(query, row), j) for j, row in enumerate(rows) if j != skip)
    return [j for _, j in ranked[:k]]


def _recall_reference(original: np.ndarray, compressed: np.ndarray, k: int) -> float:
    a, b = original.tolist(), compressed.tolist()
    shares = []
    for i in range(len(a)):
        want = set(_nearest(a[i], a, k, skip=i))
        got = set(_nearest(b[i], b, k, skip=i))
        shares.append(len(want & got) / k)
    return sum(shares) / len(shares)


def _knn_reference(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int) -> list[int]:
    rows, ys = train.tolist(), labels.tolist()
    out = []
    for query in test.tolist():
        nearest = _nearest(query, rows, k)
        votes: Counter[int] = Counter()
        summed: dict[int, float] = {}
        for j in nearest:
            votes[ys[j]] += 1
            summed[ys[j]] = summed.get(ys[j], 0.0) + _cos(query, rows[j])
        out.append(max(votes, key=lambda y: (votes[y], summed[y], -y)))
    return out


def _ternary(rng: np.random.Generator, n: int, dim: int = 6) -> np.ndarray:
    """Rows with exactly four entries of +-1 (norm 2): every cosine is exact in float32 and
    float64, and many are equal, so ties are real ties."""
    x = np.zeros((n, dim), dtype=np.float32)
    for row in x:
        row[rng.choice(dim, size=4, replace=False)] = rng.choice([-1.0, 1.0], size=4)
    return x


def _angles(degrees: list[float]) -> np.ndarray:
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


def test_identical_and_rescaled_embeddings_score_perfectly() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    for copy in (x.copy(), 3.0 * x):
        assert fidelity(x, copy) == pytest.approx({"cosine_mean": 1.0, "cosine_p5": 1.0})
        assert neighbour_recall(x, copy, k=5) == 1.0
    done = embedding_scores(x, x.copy())
    assert set(done) == {"cosine_mean", "cosine_p5", "neighbour_recall_at_10"}
    assert done["neighbour_recall_at_10"] == 1.0


def test_fidelity_by_hand() -> None:
    original = np.asarray([[1.0, 0.0], [0.0, 1.0]])
    compressed = np.asarray([[1.0, 1.0], [0.0, 5.0]])  # 45 degrees off, then the same direction
    got = fidelity(original, compressed)
    low = 1 / math.sqrt(2)
    assert got["cosine_mean"] == pytest.approx((low + 1) / 2, abs=1e-6)
    assert got["cosine_p5"] == pytest.approx(low + 0.05 * (1 - low), abs=1e-6)  # interpolated
    opposite = fidelity(original, -original)
    assert opposite["cosine_mean"] == pytest.approx(-1.0)
    zero = fidelity(original, np.zeros((2, 2)))  # a zero vector is at cosine 0 with all
    assert zero == {"cosine_mean": 0.0, "cosine_p5": 0.0}


def test_neighbour_recall_of_a_swapped_copy_by_hand() -> None:
    """Texts at 0, 10, 90 and 100 degrees; the compressed model swaps texts 1 and 2.

    k=1: every text's one neighbour changes (recall 0). k=2: texts 0..3 keep 2, 1, 1 and 2
    of their two neighbours: 6 of 8.
    """
    original = _angles([0, 10, 90, 100])
    compressed = _angles([0, 90, 10, 100])
    assert neighbour_recall(original, compressed, k=1) == 0.0
    assert neighbour_recall(original, compressed, k=2) == 0.75
    assert neighbour_recall(original, compressed, k=3) == 1.0  # all the others
    assert neighbour_recall(original, compressed, k=10) == 1.0  # k capped at n - 1


def test_neighbour_recall_matches_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(1)
    original = rng.normal(size=(40, 8)).astype(np.float32)
    compressed = original + 0.6 * rng.normal(size=original.shape).astype(np.float32)
    for k in (1, 3, 7):
        want = _recall_reference(original, compressed, k)
        assert neighbour_recall(original, compressed, k) == pytest.approx(want, abs=1e-12)
        assert 0.0 < want < 1.0


def test_neighbour_recall_breaks_ties_by_index_like_brute_force() -> None:
    rng = np.random.default_rng(2)
    original = _ternary(rng, 45)
    compressed = _ternary(rng, 45)
    compressed[:20] = original[:20]  # part agree, and equal similarities abound
    for k in (1, 4, 9):
        want = _recall_reference(original, compressed, k)
        assert neighbour_recall(original, compressed, k) == pytest.approx(want, abs=1e-12)


def test_recall_ignores_a_shared_permutation_and_rotation() -> None:
    """The same reordering of the texts for both models, or a rotation of one model's
    space, keeps every neighbourhood."""
    rng = np.random.default_rng(3)
    original = rng.normal(size=(60, 12)).astype(np.float32)
    compressed = original + 0.5 * rng.normal(size=original.shape).astype(np.float32)
    order = rng.permutation(60)
    base = neighbour_recall(original, compressed, k=5)
    assert neighbour_recall(original[order], compressed[order], k=5) == pytest.approx(base)
    rotation, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    rotated = (original.astype(np.float64) @ rotation).astype(np.float32)
    assert fidelity(original, rotated)["cosine_mean"] < 0.9
    assert neighbour_recall(original, rotated, k=5) == 1.0


def test_blocks_give_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small blocks (self-exclusion offsets, block edges) agree with a single block."""
    rng = np.random.default_rng(4)
    original = _ternary(rng, 50)
    compressed = _ternary(rng, 50)
    train, train_labels = _ternary(rng, 70), rng.integers(0, 3, size=70)
    whole = (
        neighbour_recall(original, compressed, k=4),
        knn_predict(train, train_labels, compressed, k=5).tolist(),
    )
    monkeypatch.setattr(scores, "BLOCK", 7)
    assert whole == (
        neighbour_recall(original, compressed, k=4),
        knn_predict(train, train_labels, compressed, k=5).tolist(),
    )
    assert whole[0] == pytest.approx(_recall_reference(original, compressed, 4), abs=1e-12)


def test_knn_matches_brute_force_with_ties_and_sparse_label_ids() -> None:
    """Vote ties are broken by summed similarity, then by the smallest label id."""
    rng = np.random.default_rng(5)
    train = _ternary(rng, 80)
    train_labels = rng.choice([3, 7, 11], size=80)
    test = _ternary(rng, 40)
    test_labels = rng.choice([3, 7, 11], size=40)
    for k in (1, 2, 4, 6, 10):
        want = _knn_reference(train, train_labels, test, k)
        assert knn_predict(train, train_labels, test, k).tolist() == want
        right = sum(int(p == y) for p, y in zip(want, test_labels.tolist(), strict=True))
        assert knn_accuracy(train, train_labels, test, test_labels, k) == right / 40
    random_train = rng.normal(size=(90, 8)).astype(np.float32)
    random_labels = rng.integers(0, 4, size=90)
    random_test = rng.normal(size=(30, 8)).astype(np.float32)
    for k in (3, 8):
        want = _knn_reference(random_train, random_labels, random_test, k)
        assert knn_predict(random_train, random_labels, random_test, k).tolist() == want


def test_knn_tie_rules_by_hand() -> None:
    # query at 0 degrees; k=2: one "5" at 0 degrees, one "2" at 60: equal votes, "5" is closer
    train = _angles([0, 60, 180])
    assert knn_predict(train, np.asarray([5, 2, 2]), _angles([0]), k=2).tolist() == [5]
    # two labels at the same similarity (+-30 degrees): the smaller id wins
    train = _angles([30, -30, 180])
    assert knn_predict(train, np.asarray([9, 4, 1]), _angles([0]), k=2).tolist() == [4]
    # majority beats similarity: two "1"s at 50 degrees outvote one "0" at 0
    train = _angles([0, 50, -50])
    assert knn_predict(train, np.asarray([0, 1, 1]), _angles([0]), k=3).tolist() == [1]


def _clusters(
    rng: np.random.Generator, per_class: int, classes: int = 4, dim: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    centres = 5.0 * np.eye(classes, dim)
    labels = np.repeat(np.arange(classes), per_class)
    points = centres[labels] + 0.3 * rng.normal(size=(labels.size, dim))
    return points.astype(np.float32), labels


def test_knn_accuracy_on_clusters_and_shuffled_labels() -> None:
    rng = np.random.default_rng(6)
    train, train_labels = _clusters(rng, 50)
    test, test_labels = _clusters(rng, 20)
    assert knn_accuracy(train, train_labels, test, test_labels, k=10) == 1.0
    shuffled = rng.permutation(train_labels)
    assert knn_accuracy(train, shuffled, test, test_labels, k=10) < 0.6
    compressed_test = test + 0.05 * rng.normal(size=test.shape).astype(np.float32)
    compressed_train = train + 0.05 * rng.normal(size=train.shape).astype(np.float32)
    done = embedding_scores(
        test,
        compressed_test,
        train=compressed_train,
        train_labels=train_labels,
        test_labels=test_labels,
        original_train=train,
        k=10,
    )
    assert done["knn_accuracy"] == done["knn_accuracy_original"] == 1.0
    assert done["majority_baseline"] == 0.25
    assert done["cosine_mean"] > 0.99
    assert 0.0 < done["neighbour_recall_at_10"] <= 1.0


def test_majority_baseline_by_hand() -> None:
    assert majority_baseline(np.asarray([2, 2, 1, 0]), np.asarray([2, 1, 2, 2])) == 0.75
    # tie between 1 and 4 (two each): the smaller id, 1
    assert majority_baseline(np.asarray([4, 1, 4, 1]), np.asarray([1, 4, 4, 4])) == 0.25
    with pytest.raises(ValueError, match="needs training and test labels"):
        majority_baseline(np.asarray([], dtype=np.int64), np.asarray([1]))


def test_mismatches_and_bad_inputs_are_refused() -> None:
    a = np.ones((5, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="same shape"):
        fidelity(a, np.ones((5, 3)))
    with pytest.raises(ValueError, match="same shape"):
        neighbour_recall(a, np.ones((4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        embedding_scores(a, np.ones((4, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fidelity(a, np.full((5, 4), np.nan))
    with pytest.raises(ValueError, match="non-empty"):
        fidelity(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="at least 2 texts"):
        neighbour_recall(a[:1], a[:1])
    with pytest.raises(ValueError, match="k must be at least 1"):
        neighbour_recall(a, a, k=0)
    with pytest.raises(ValueError, match="differ in dimension"):
        knn_accuracy(np.ones((3, 2)), np.asarray([0, 1, 0]), a, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="expected 3 labels"):
        knn_accuracy(np.ones((3, 4)), np.asarray([0, 1]), a, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="integer ids"):
        knn_accuracy(np.ones((3, 4)), np.asarray([0.5, 1, 0]), a, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="needs `train`"):
        embedding_scores(a, a, train_labels=np.zeros(3, dtype=int), test_labels=np.zeros(5))
    with pytest.raises(ValueError, match="both train_labels and test_labels"):
        embedding_scores(a, a, train=a, train_labels=np.zeros(5, dtype=int))
