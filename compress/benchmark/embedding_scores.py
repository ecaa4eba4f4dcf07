"""How far a compressed sentence-embedding model moved from the original: pure numpy scores.

Both models embed the same test texts (rows in the same order). `fidelity` compares
each text's two embeddings (cosine), `neighbour_recall` asks whether each text keeps
its nearest neighbours among the other test texts, and `knn_accuracy` scores the
embeddings as a cosine k-nearest-neighbour classifier against labelled training
texts (with `majority_baseline` as the floor it should beat).

    >>> import numpy as np
    >>> x = np.eye(3, dtype=np.float32)
    >>> fidelity(x, 2 * x)
    {'cosine_mean': 1.0, 'cosine_p5': 1.0}

Similarities are float32 matrix products computed `BLOCK` query rows at a time, so
10,000 training by 2,000 test rows need a few tens of MB. Rows are L2-normalized
here (inputs need not be); an all-zero row has cosine 0 with everything. Nearest
neighbours are ordered by (-similarity, index): among equal similarities the
smaller index comes first, so results do not depend on the sort algorithm.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 1024  # query rows per similarity block


def _matrix(x: np.ndarray, name: str) -> np.ndarray:
    """`x` as a finite float32 [rows, dim] array with at least one row, or a ValueError."""
    array = np.asarray(x, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty [rows, dim] array, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: holds NaN or infinite values")
    return array


def _normalized(x: np.ndarray, name: str) -> np.ndarray:
    """Rows of `x` scaled to unit L2 norm (all-zero rows stay zero), float32."""
    array = _matrix(x, name)
    norms = np.linalg.norm(array.astype(np.float64), axis=1, keepdims=True)
    return (array / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _labels(y: np.ndarray, rows: int, name: str) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != rows:
        raise ValueError(f"{name}: expected {rows} labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integer ids (got {labels.dtype})")
    return labels.astype(np.int64)


def _same_shape(original: np.ndarray, compressed: np.ndarray) -> None:
    if np.shape(original) != np.shape(compressed):
        raise ValueError(
            "the original and compressed embeddings must have the same shape "
            f"(got {np.shape(original)} and {np.shape(compressed)})"
        )


def _blocks(rows: int) -> Iterator[slice]:
    for start in range(0, rows, BLOCK):
        yield slice(start, min(start + BLOCK, rows))


def _top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """Per row, the column indices of the `k` largest values ordered by (-value, index)."""
    n = similarity.shape[1]
    if k >= n:
        return np.argsort(-similarity, axis=1, kind="stable")
    picked = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(similarity, picked, axis=1).min(axis=1)
    # a tie at the k-th value: argpartition chose among equals arbitrarily
    for row in np.flatnonzero((similarity >= kth[:, None]).sum(axis=1) > k):
        picked[row] = np.argsort(-similarity[row], kind="stable")[:k]
    values = np.take_along_axis(similarity, picked, axis=1)
    order = np.lexsort((picked, -values), axis=1)
    return np.take_along_axis(picked, order, axis=1)


def _neighbours(unit: np.ndarray, k: int) -> Iterator[tuple[slice, np.ndarray]]:
    """For each block of rows, the `k` nearest other rows (cosine), the row itself excluded."""
    for block in _blocks(unit.shape[0]):
        similarity = unit[block] @ unit.T
        rows = np.arange(block.stop - block.start)
        similarity[rows, rows + block.start] = -np.inf
        yield block, _top_k(similarity, k)


def fidelity(original: np.ndarray, compressed: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between the two models' embeddings of the same texts.

    Returns `cosine_mean` and `cosine_p5` (the 5th percentile: the worst texts).
    Raises ValueError when the shapes differ.
    """
    _same_shape(original, compressed)
    a = _normalized(original, "original").astype(np.float64)
    b = _normalized(compressed, "compressed").astype(np.float64)
    cosine = np.clip((a * b).sum(axis=1), -1.0, 1.0)
    return {
        "cosine_mean": float(cosine.mean()),
        "cosine_p5": float(np.percentile(cosine, 5)),
    }


def neighbour_recall(original: np.ndarray, compressed: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's `k` nearest other texts under the original model that the
    compressed model also puts among its `k` nearest (cosine; the text itself excluded).

    With fewer than `k + 1` texts, `k` is the number of other texts (recall is then 1).
    Raises ValueError when the shapes differ, on fewer than 2 texts, or when k < 1.
    """
    _same_shape(original, compressed)
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    a = _normalized(original, "original")
    b = _normalized(compressed, "compressed")
    n = a.shape[0]
    if n < 2:
        raise ValueError("neighbour recall needs at least 2 texts")
    k = min(k, n - 1)
    hits = 0
    for (_, want), (_, got) in zip(_neighbours(a, k), _neighbours(b, k), strict=True):
        want.sort(axis=1)
        got.sort(axis=1)
        for row_want, row_got in zip(want, got, strict=True):
            hits += int(np.intersect1d(row_want, row_got, assume_unique=True).size)
    return float(hits / (n * k))


def knn_predict(
    train_emb: np.ndarray, train_labels: np.ndarray, test_emb: np.ndarray, k: int = 10
) -> np.ndarray:
    """Labels a cosine kNN classifier gives the test rows: the commonest label among the
    `k` nearest training rows; a tie goes to the larger summed similarity, then to the
    smallest label id."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    train = _normalized(train_emb, "train embeddings")
    test = _normalized(test_emb, "test embeddings")
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            f"train and test embeddings differ in dimension ({train.shape[1]} vs {test.shape[1]})"
        )
    labels = _labels(train_labels, train.shape[0], "train_labels")
    classes, codes = np.unique(labels, return_inverse=True)  # sorted: index order = id order
    c = classes.size
    k = min(k, train.shape[0])
    predicted = np.empty(test.shape[0], dtype=np.int64)
    for block in _blocks(test.shape[0]):
        similarity = test[block] @ train.T
        nearest = _top_k(similarity, k)
        rows = nearest.shape[0]
        cells = (np.arange(rows)[:, None] * c + codes[nearest]).ravel()
        weights = np.take_along_axis(similarity, nearest, axis=1).astype(np.float64).ravel()
        votes = np.bincount(cells, minlength=rows * c).reshape(rows, c)
        summed = np.bincount(cells, weights=weights, minlength=rows * c).reshape(rows, c)
        leading = votes == votes.max(axis=1, keepdims=True)
        summed = np.where(leading, summed, -np.inf)
        best = summed == summed.max(axis=1, keepdims=True)
        predicted[block] = classes[best.argmax(axis=1)]  # first True: the smallest id
    return predicted


def knn_accuracy(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    test_emb: np.ndarray,
    test_labels: np.ndarray,
    k: int = 10,
) -> float:
    """Accuracy on the test rows of the cosine kNN classifier of `knn_predict`."""
    predicted = knn_predict(train_emb, train_labels, test_emb, k)
    truth = _labels(test_labels, predicted.shape[0], "test_labels")
    return float((predicted == truth).mean())


def majority_baseline(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Accuracy of always answering the commonest training label (a tie: the smallest id)."""
    train = np.asarray(train_labels)
    test = np.asarray(test_labels)
    if train.size == 0 or test.size == 0:
        raise ValueError("majority baseline needs training and test labels")
    train = _labels(train, train.size, "train_labels")
    test = _labels(test, test.size, "test_labels")
    classes, counts = np.unique(train, return_counts=True)
    return float((test == classes[counts.argmax()]).mean())


def embedding_scores(
    original_test: np.ndarray,
    compressed_test: np.ndarray,
    *,
    train: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    original_train: np.ndarray | None = None,
    k: int = 10,
) -> dict[str, float]:
    """Every score of a compressed embedding model against the original one.

    Always `cosine_mean`, `cosine_p5` and `neighbour_recall_at_{k}` on the test texts.
    With `train_labels` and `test_labels` (and then `train`, the compressed model's
    embeddings of the training texts, is required): `knn_accuracy` of the compressed
    model and `majority_baseline`; with `original_train` too, `knn_accuracy_original`
    (the original model's own kNN accuracy, the figure to compare with).
    """
    scores = fidelity(original_test, compressed_test)
    scores[f"neighbour_recall_at_{k}"] = neighbour_recall(original_test, compressed_test, k)
    if (train_labels is None) != (test_labels is None):
        raise ValueError("kNN accuracy needs both train_labels and test_labels")
    if train_labels is None or test_labels is None:
        return scores
    if train is None:
        raise ValueError("kNN accuracy needs `train`: the compressed model's train embeddings")
    scores["knn_accuracy"] = knn_accuracy(train, train_labels, compressed_test, test_labels, k)
    if original_train is not None:
        scores["knn_accuracy_original"] = knn_accuracy(
            original_train, train_labels, original_test, test_labels, k
        )
    scores["majority_baseline"] = majority_baseline(train_labels, test_labels)
    return scores
