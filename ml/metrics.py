"""Classification metrics in plain numpy (no scikit-learn dependency).

Definitions follow Sokolova & Lapalme, "A systematic analysis of performance measures for
classification tasks", Information Processing & Management 45(4), 2009, and match
scikit-learn's ``confusion_matrix``, ``precision_recall_fscore_support(zero_division=0)`` and
``f1_score(average="macro")`` when every class id ``0..K-1`` is listed as a label.
"""

from __future__ import annotations

import numpy as np

from ml.labels import EXPRESSIONS, NUM_CLASSES


def _check(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"expected two 1-D arrays of equal length, got {t.shape} and {p.shape}")
    if t.size and not (np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"expected integer class ids, got {t.dtype} and {p.dtype}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} has class ids outside 0..{num_classes - 1}")
    return t.astype(np.int64), p.astype(np.int64)


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Count matrix ``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    Args:
        y_true: ``int`` ``(N,)`` true class ids in ``0..num_classes-1``.
        y_pred: ``int`` ``(N,)`` predicted class ids, same range.
        num_classes: ``K``.

    Returns:
        ``int64`` ``(K, K)``; rows are true classes, columns predictions; sums to ``N``.

    Raises:
        ValueError: shapes differ, not 1-D, not integers, or ids out of range.
    """
    t, p = _check(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples whose prediction equals the label, in ``[0, 1]`` (``nan`` for N = 0)."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"shapes differ: {t.shape} vs {p.shape}")
    return float(np.mean(t == p)) if t.size else float("nan")


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix.

    For class ``k`` with ``TP = C[k, k]``, ``FP = sum_i C[i, k] - TP``, ``FN = sum_j C[k, j] - TP``:
    precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)``, F1 the harmonic mean
    ``2 P R / (P + R)`` (van Rijsbergen, 1979). A ratio with a zero denominator is defined as 0
    (scikit-learn's ``zero_division=0``).

    Args:
        cm: ``(K, K)`` counts, rows true, columns predicted.

    Returns:
        ``{"precision", "recall", "f1"}``: ``float64`` ``(K,)`` in ``[0, 1]``;
        ``"support"``: ``int64`` ``(K,)`` true samples per class.
    """
    cm = np.asarray(cm, np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square matrix, got {cm.shape}")
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> float:
    """Macro-averaged F1: the unweighted mean of the ``K`` per-class F1 scores.

    Every class counts equally whatever its size, so the rare disgust class weighs as much as
    happy (Sokolova & Lapalme 2009, table 3, "F-score_M" computed as the mean of per-class F1,
    which is scikit-learn's ``f1_score(average="macro")``). Classes with no true and no predicted
    sample count as F1 = 0.

    Args:
        y_true: ``int`` ``(N,)`` labels.
        y_pred: ``int`` ``(N,)`` predictions.
        num_classes: ``K``.

    Returns:
        A float in ``[0, 1]``.
    """
    return float(per_class_scores(confusion_matrix(y_true, y_pred, num_classes))["f1"].mean())


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, labels: tuple[str, ...] = EXPRESSIONS
) -> dict:
    """All the numbers of one evaluation as a JSON-able dict.

    Args:
        y_true: ``int`` ``(N,)`` labels in ``0..len(labels)-1``.
        y_pred: ``int`` ``(N,)`` predictions.
        labels: class names in id order.

    Returns:
        ``{"n", "accuracy", "macro_f1", "per_class": {name: {"precision", "recall", "f1",
        "support"}}, "labels", "confusion_matrix": [[int]] (rows true, columns predicted)}``.
    """
    k = len(labels)
    cm = confusion_matrix(y_true, y_pred, k)
    scores = per_class_scores(cm)
    return {
        "n": int(cm.sum()),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": float(scores["f1"].mean()),
        "per_class": {
            name: {
                "precision": float(scores["precision"][i]),
                "recall": float(scores["recall"][i]),
                "f1": float(scores["f1"][i]),
                "support": int(scores["support"][i]),
            }
            for i, name in enumerate(labels)
        },
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }


__all__ = ["accuracy", "classification_report", "confusion_matrix", "macro_f1", "per_class_scores"]
