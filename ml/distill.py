"""Knowledge distillation: a small student learns from a large teacher's logits.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network" (arXiv:1503.02531):
the student minimises

    (1 - alpha) * CE(targets, softmax(s)) + alpha * T**2 * KL(softmax(t / T) || softmax(s / T))

where ``s`` and ``t`` are the student's and the teacher's logits, ``targets`` the (label-smoothed,
optionally FER+-mixed) training targets and ``T`` the temperature; the ``T**2`` factor keeps the
soft term's gradients on the scale of the hard term's (section 2 of the paper).

The teacher's logits are computed once, on the *clean* faces, and the student sees the same
faces augmented (:mod:`ml.augment`): a mirrored, rotated, dimmed or blurred face keeps the
expression of the clean one, so the target the student learns for a degraded face is what the
teacher reads on the clean face. Keras passes one ``y_true`` per sample, so the training targets
and the teacher's logits travel together as ``(N, 14)``: columns 0-6 the targets, 7-13 the
logits (:func:`pack_targets`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import ops

from ml.labels import NUM_CLASSES


def pack_targets(targets: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    """``float32`` ``(N, 14)``: training targets (``(N, 7)``, rows summing to 1) beside the
    teacher's logits (``(N, 7)``).

    Raises:
        ValueError: the two arrays are not both ``(N, 7)``.
    """
    if targets.shape != teacher_logits.shape or targets.shape[1:] != (NUM_CLASSES,):
        raise ValueError(
            f"targets {targets.shape} and teacher logits {teacher_logits.shape} must both be "
            f"(N, {NUM_CLASSES})"
        )
    return np.concatenate([targets, teacher_logits], axis=1).astype(np.float32)


@keras.saving.register_keras_serializable(package="ml")
class DistillationLoss(keras.losses.Loss):
    """The loss of the module docstring on packed ``(N, 14)`` targets and ``(N, 7)`` logits.

    Args:
        alpha: weight of the teacher term, in ``[0, 1]``.
        temperature: ``T`` > 0.
        label_smoothing: smoothing of the hard targets (Szegedy et al. 2016), in ``[0, 1)``.

    Raises:
        ValueError: an argument outside its range.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        temperature: float = 2.0,
        label_smoothing: float = 0.0,
        name: str = "distillation",
        **kwargs,
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        super().__init__(name=name, **kwargs)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        targets, teacher = y_true[:, :NUM_CLASSES], y_true[:, NUM_CLASSES:]
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + self.label_smoothing / NUM_CLASSES
        hard = -ops.sum(targets * ops.log_softmax(y_pred, axis=-1), axis=-1)
        t = self.temperature
        p_teacher = ops.softmax(teacher / t, axis=-1)
        kl = ops.sum(
            p_teacher
            * (ops.log_softmax(teacher / t, axis=-1) - ops.log_softmax(y_pred / t, axis=-1)),
            axis=-1,
        )
        return (1.0 - self.alpha) * hard + self.alpha * t * t * kl

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "label_smoothing": self.label_smoothing,
        }


@keras.saving.register_keras_serializable(package="ml")
def target_accuracy(y_true, y_pred):
    """Accuracy against the argmax of the training targets (columns 0-6 of packed targets)."""
    return ops.cast(
        ops.equal(ops.argmax(y_true[:, :NUM_CLASSES], axis=-1), ops.argmax(y_pred, axis=-1)),
        "float32",
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def teacher_logits(
    teacher_path: str | os.PathLike | Sequence[str | os.PathLike],
    images: dict[str, np.ndarray],
    cache: str | os.PathLike,
    *,
    data_sha256: str = "",
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """The teacher's logits on clean faces, computed once and cached.

    Several teacher files make an ensemble teacher: its logits are the members' mean logits,
    i.e. its softmax is the normalised geometric mean of the members' probabilities (the
    ensemble Hinton et al. 2015 distil into one model in section 4, speech recognition).

    Args:
        teacher_path: a ``.keras`` model (its whole graph runs, test-time views included), or a
            non-empty sequence of them (an ensemble, equal weights).
        images: split name -> ``float32`` ``(N, 48, 48, 1)`` faces in ``[0, 1]``.
        cache: ``.npz`` file; reused when it was written for the same teacher files (sha256,
            in order), the same data (``data_sha256``) and the same number of faces per split.
        data_sha256: the data file's sha256, to tell caches of different data apart.
        batch_size: faces per forward pass.

    Returns:
        Split name -> ``float32`` ``(N, 7)`` logits.

    Raises:
        FileNotFoundError: a teacher file does not exist.
        ValueError: no teacher file is given, or a teacher cannot be loaded, does not output 7
            values, or ends in a softmax (probabilities, not logits).
    """
    from tqdm.auto import tqdm

    from ml.modelio import load_keras_model

    if isinstance(teacher_path, (str, os.PathLike)):
        teacher_path = [teacher_path]
    paths, cache = [Path(p) for p in teacher_path], Path(cache)
    if not paths:
        raise ValueError("no teacher model given")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"teacher model not found: {path}")
    key = f"{'+'.join(_sha256(path) for path in paths)}:{data_sha256}"
    if cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == key and all(
                name in z.files and len(z[name]) == len(x) for name, x in images.items()
            ):
                return {name: z[name] for name in images}
    out = {name: np.zeros((len(x), NUM_CLASSES), np.float64) for name, x in images.items()}
    for path in paths:
        model = load_keras_model(path)
        if tuple(model.output_shape)[-1] != NUM_CLASSES:
            raise ValueError(f"teacher {path} outputs {model.output_shape}, not 7 logits")
        activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
        if activation == "softmax":
            raise ValueError(f"teacher {path} outputs probabilities; distillation needs logits")
        for name, x in images.items():
            for start in tqdm(
                range(0, len(x), batch_size), desc=f"teacher logits {name} ({path.name})"
            ):
                logits = model(x[start : start + batch_size], training=False)
                out[name][start : start + batch_size] += np.asarray(logits) / len(paths)
    out = {name: logits.astype(np.float32) for name, logits in out.items()}
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, key=np.array(key), **out)
    os.replace(tmp, cache)
    return out


__all__ = ["DistillationLoss", "pack_targets", "target_accuracy", "teacher_logits"]
