"""Calibration of a classifier's probabilities: ECE, NLL, reliability bins, temperature scaling.

* Top-label expected calibration error (ECE; Naeini, Cooper & Hauskrecht, AAAI 2015; Guo et
  al., "On Calibration of Modern Neural Networks", ICML 2017, eq. 3): the faces are put in
  ``M`` equal-width bins of their top probability (the confidence), and
  ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|``. ``M = 15`` as in Guo et al.
* Negative log-likelihood: ``-mean(log p[true class])``, in nats.
* Temperature scaling (Guo et al. 2017, section 4.2): one scalar ``T > 0`` divides the logits,
  fitted by minimising the NLL on a held-out split (here PublicTest, never PrivateTest). It
  changes the confidences, never the argmax.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = [
    "LOGIT_BIAS_GRID",
    "fit_logit_bias",
    "ECE_BINS",
    "apply_temperature",
    "calibration_report",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability",
    "reliability_bins",
]

ECE_BINS: int = 15
"""Equal-width confidence bins of the ECE (Guo et al. 2017 use 15)."""

_EPS = 1e-12


def _check(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or y.ndim != 1 or len(p) != len(y):
        raise ValueError(f"expected (N, K) probabilities and (N,) labels, got {p.shape}, {y.shape}")
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError("labels must be integer class ids in 0..K-1")
    return p, y.astype(np.int64)


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> dict[str, list]:
    """Per-bin counts, mean confidence and accuracy of the top label.

    Bin ``m`` holds confidences in ``((m-1)/M, m/M]`` (the first bin also holds 0).

    Args:
        probabilities: ``float`` ``(N, K)``, rows summing to 1.
        labels: ``int`` ``(N,)`` true classes.
        bins: ``M >= 1``.

    Returns:
        ``{"edges": M+1 floats, "count": M ints, "confidence": M floats | None,
        "accuracy": M floats | None}`` (``None`` for an empty bin).

    Raises:
        ValueError: shapes or labels do not match, or ``bins < 1``.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    p, y = _check(probabilities, labels)
    confidence = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == y) if len(p) else np.zeros(0, bool)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    return {
        "edges": [m / bins for m in range(bins + 1)],
        "count": count.tolist(),
        "confidence": [float(c / n) if n else None for c, n in zip(conf_sum, count, strict=True)],
        "accuracy": [float(a / n) if n else None for a, n in zip(acc_sum, count, strict=True)],
    }


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Top-label ECE with ``bins`` equal-width bins, in ``[0, 1]`` (``nan`` for N = 0).

    Raises:
        ValueError: as :func:`reliability_bins`.
    """
    r = reliability_bins(probabilities, labels, bins)
    n = sum(r["count"])
    if not n:
        return float("nan")
    return float(
        sum(
            c / n * abs(a - f)
            for c, a, f in zip(r["count"], r["accuracy"], r["confidence"], strict=True)
            if c
        )
    )


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-log p[true class]`` in nats (probabilities clipped at 1e-12); ``nan`` for N = 0.

    Raises:
        ValueError: as :func:`reliability_bins`.
    """
    p, y = _check(probabilities, labels)
    if not len(y):
        return float("nan")
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, None))))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)``: temperature scaling applied to probabilities.

    ``log p`` equals the logits up to a per-row constant, which the softmax cancels, so this is
    exactly ``softmax(logits / T)``.

    Args:
        probabilities: ``float`` ``(N, K)``.
        temperature: ``T > 0``; ``T > 1`` softens, ``T < 1`` sharpens, ``T = 1`` is the identity.

    Returns:
        ``float32`` ``(N, K)``, rows summing to 1, same argmax as the input.

    Raises:
        ValueError: ``temperature <= 0`` or not finite.
    """
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z = np.log(np.clip(np.asarray(probabilities, np.float64), _EPS, None)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(
    probabilities: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature that minimises the NLL of :func:`apply_temperature` on a held-out split.

    Bounded scalar minimisation over ``log T`` (``scipy.optimize.minimize_scalar``, Brent's
    method); the NLL is convex in ``1/T`` (Guo et al. 2017), so the minimum is unique.

    Args:
        probabilities: ``float`` ``(N, K)`` of the split (PublicTest, never the test split).
        labels: ``int`` ``(N,)``.
        bounds: search interval for ``T``.

    Returns:
        ``T`` in ``bounds``.

    Raises:
        ValueError: as :func:`reliability_bins`, or no sample.
        ImportError: SciPy is not installed (it comes with the ``ml`` extra).
    """
    try:
        from scipy.optimize import minimize_scalar
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("fitting a temperature needs SciPy: pip install -e '.[ml]'") from exc

    p, y = _check(probabilities, labels)
    if not len(y):
        raise ValueError("cannot fit a temperature on 0 samples")
    logits = np.log(np.clip(p, _EPS, None))
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, y]))

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def calibration_report(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """``{"ece": float, "nll": float, "bins": int, "reliability": reliability_bins(...)}``."""
    return {
        "ece": expected_calibration_error(probabilities, labels, bins),
        "nll": negative_log_likelihood(probabilities, labels),
        "bins": bins,
        "reliability": reliability_bins(probabilities, labels, bins),
    }


def plot_reliability(
    curves: dict[str, dict], path: str | os.PathLike, title: str = "reliability"
) -> None:
    """Save a reliability diagram: accuracy against confidence per bin, one line per curve.

    Args:
        curves: ``{name: calibration_report(...)}``; the legend shows each ECE.
        path: PNG file to write.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect calibration")
    for name, rep in curves.items():
        rel = rep["reliability"]
        pts = [
            (c, a)
            for c, a, n in zip(rel["confidence"], rel["accuracy"], rel["count"], strict=True)
            if n
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", ms=3, label=f"{name} (ECE {rep['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability), bin mean")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


#: Offsets tried per class by :func:`fit_logit_bias` (natural-log units added to a logit).
LOGIT_BIAS_GRID: tuple[float, ...] = (
    -0.6,
    -0.5,
    -0.4,
    -0.3,
    -0.2,
    -0.1,
    0.0,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
)


def fit_logit_bias(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[int],
    min_recall: dict[int, float],
    grid: Sequence[float] = LOGIT_BIAS_GRID,
) -> tuple[np.ndarray, float]:
    """Per-class offsets added to the logits that correct a prior shift, fitted on held-out faces.

    A model trained on other targets than the labels it is scored on (here: FER+ vote shares
    and a teacher's soft targets, which favour "neutral", scored on FER2013's labels) is off by
    a per-class constant in log space (a label-prior shift; Saerens et al. 2002, "Adjusting the
    outputs of a classifier to new a priori probabilities"). This searches the offsets of
    ``classes`` on ``grid`` (all combinations) and keeps the one of highest accuracy among those
    meeting every ``min_recall``; ties keep the smaller total shift.

    Args:
        probabilities: ``(N, C)`` softmax outputs on the fitting split (PublicTest, never the
            reported one).
        labels: ``(N,)`` class ids.
        classes: the classes whose offsets are searched (the others stay 0).
        min_recall: ``{class: recall}`` floors, ``0..1``.
        grid: offsets tried per class.

    Returns:
        ``(offsets, accuracy)``: ``float32`` ``(C,)`` offsets and the fitted split's accuracy
        with them.

    Raises:
        ValueError: no combination meets the floors, or bad shapes.
    """
    import itertools

    probabilities, labels = _check(probabilities, labels)
    logits = np.log(np.clip(probabilities, 1e-12, 1.0))
    n_classes = logits.shape[1]
    best: tuple[float, float, np.ndarray] | None = None
    for combo in itertools.product(grid, repeat=len(classes)):
        offsets = np.zeros(n_classes, np.float64)
        offsets[list(classes)] = combo
        pred = (logits + offsets).argmax(1)
        if any((pred[labels == c] == c).mean() < floor for c, floor in min_recall.items()):
            continue
        accuracy = float((pred == labels).mean())
        key = (accuracy, -float(np.abs(offsets).sum()))
        if best is None or key > best[:2]:
            best = (*key, offsets)
    if best is None:
        raise ValueError(f"no offsets on the grid meet the recall floors {min_recall}")
    return best[2].astype(np.float32), best[0]
