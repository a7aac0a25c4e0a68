"""Inference API for a trained expression classifier (used by the worker and outside checks).

::

    from ml.inference import ExpressionClassifier

    clf = ExpressionClassifier.load()              # the shipped model in ml/shipped/
    probs = clf.predict_proba(crops)               # float32 (N, 7), FER2013 order
    clf.labels[probs[0].argmax()]                  # e.g. "happy"

Two back ends, picked by the file suffix:

* ``.tflite``: LiteRT (``ai_edge_litert.interpreter.Interpreter``). TensorFlow is **not**
  imported, so CPU workers start fast and stay small.
* ``.keras`` (or ``.h5``/``.hdf5``): Keras 3 on TensorFlow, called through one traced
  ``tf.function`` (``model(x, training=False)``), never ``model.predict`` (which costs tens of
  milliseconds per call in set-up alone).

A metadata file with the same stem and a ``.json`` suffix next to the model (written by
:mod:`ml.export`) is read when present; it gives the labels, the input size and whether the
model outputs logits (our models) or probabilities.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml.labels import EXPRESSIONS, NUM_CLASSES
from ml.preprocessing import preprocess_faces

SHIPPED_DIR: Path = Path(__file__).resolve().parent / "shipped"
"""Folder of the shipped default model."""

SHIPPED_MODEL: Path = SHIPPED_DIR / "expression_cnn.tflite"
"""The default model file loaded by ``ExpressionClassifier.load()``."""

MAX_BATCH: int = 256
"""Largest batch sent to the back end at once; bigger inputs are split (bounds memory)."""

_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable.

    ``softmax(z)_k = exp(z_k - max(z)) / sum_j exp(z_j - max(z))``; subtracting the row maximum
    does not change the result and keeps ``exp`` from overflowing (Goodfellow et al., *Deep
    Learning*, 2016, section 4.1).

    Args:
        logits: ``(N, K)`` real scores, any float dtype.

    Returns:
        ``float32`` ``(N, K)``, rows in ``[0, 1]`` summing to 1.
    """
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def read_metadata(model_path: str | os.PathLike) -> dict[str, Any]:
    """Read the metadata JSON next to a model (``NAME.json`` for ``NAME.tflite``/``NAME.keras``).

    Args:
        model_path: the model file.

    Returns:
        The parsed JSON object, or ``{}`` when there is no such file.

    Raises:
        ValueError: the file exists but is not a JSON object.
    """
    meta_path = Path(model_path).with_suffix(".json")
    if not meta_path.is_file():
        return {}
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"metadata {meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"metadata {meta_path} must hold a JSON object")
    return data


class _TFLiteBackend:
    """Runs a ``.tflite`` file with LiteRT; resizes the input tensor to the batch size."""

    kind = "tflite"

    def __init__(self, path: Path, num_threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        inp = self._interpreter.get_input_details()
        out = self._interpreter.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise ValueError(
                f"{path}: expected 1 input and 1 output, got {len(inp)} and {len(out)}"
            )
        self._in, self._out = inp[0], out[0]
        shape = [int(v) for v in self._in["shape"]]
        if len(shape) != 4:
            raise ValueError(f"{path}: expected a 4-D (N, H, W, C) input, got shape {shape}")
        self.input_shape = tuple(shape[1:])
        self._batch = self._fixed_batch = shape[0]
        self._can_resize = True
        self._lock = threading.Lock()

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return x
        scale, zero = self._in["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.float32:
            return y
        scale, zero = self._out["quantization"]
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        it = self._interpreter
        if x.shape[0] != self._batch:
            it.resize_tensor_input(self._in["index"], list(x.shape), strict=False)
            it.allocate_tensors()
            self._batch = x.shape[0]
        it.set_tensor(self._in["index"], self._quantize(x))
        it.invoke()
        return self._dequantize(it.get_tensor(self._out["index"]).copy())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:  # one interpreter is not safe to share between threads
            if self._can_resize:
                try:
                    return self._invoke(x)
                except (ValueError, RuntimeError):
                    # Some converted graphs have a fixed batch dimension: fall back to a loop
                    # over single faces at the model's own batch size, which must then be 1.
                    if self._fixed_batch != 1:
                        raise
                    self._can_resize = False
                    self._interpreter.allocate_tensors()
                    self._batch = 1
            return np.concatenate([self._invoke(x[i : i + 1]) for i in range(len(x))])


class _KerasBackend:
    """Runs a Keras model through one ``tf.function`` traced for any batch size."""

    kind = "keras"

    def __init__(self, path: Path, safe_mode: bool):
        import tensorflow as tf

        from ml.modelio import load_keras_model

        self.model = load_keras_model(path, float32=True, safe_mode=safe_mode)
        shape = tuple(self.model.input_shape)
        if len(shape) != 4:
            raise ValueError(f"{path}: expected a 4-D (N, H, W, C) input, got {shape}")
        self.input_shape = tuple(int(v) for v in shape[1:])
        model = self.model
        self._fn = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec((None, *self.input_shape), tf.float32)],
        )
        last = model.layers[-1]
        activation = getattr(last, "activation", None)
        self.outputs_probabilities = getattr(activation, "__name__", "") == "softmax"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._fn(x), np.float32)


class ExpressionClassifier:
    """A loaded expression classifier: face crops in, 7 class probabilities out.

    Build it with :meth:`load`. Instances hold one interpreter or model and are safe to call from
    several threads (calls are serialised); load one per worker process, after the fork.

    Attributes:
        path: the model file.
        metadata: the metadata JSON next to the model (``{}`` when absent).
        backend: ``"tflite"`` or ``"keras"``.
        input_size: side of the square model input in pixels (48 for our models).
    """

    def __init__(self, path: Path, backend: Any, metadata: dict[str, Any]):
        self.path = path
        self.metadata = metadata
        self._backend = backend
        self.backend: str = backend.kind
        h, w, c = backend.input_shape
        if h != w or c != 1:
            raise ValueError(
                f"{path}: expected a square 1-channel input, got (H, W, C) = {(h, w, c)}"
            )
        self.input_size: int = int(h)
        labels = tuple(metadata.get("labels") or EXPRESSIONS)
        if len(labels) != NUM_CLASSES:
            raise ValueError(f"{path}: metadata lists {len(labels)} labels, expected {NUM_CLASSES}")
        self._labels = labels
        kind = (metadata.get("output") or {}).get("kind")
        if kind is None:
            kind = "probabilities" if getattr(backend, "outputs_probabilities", False) else "logits"
        if kind not in ("logits", "probabilities"):
            raise ValueError(
                f"{path}: metadata output.kind must be logits or probabilities, got {kind!r}"
            )
        self.output_kind: str = kind

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        num_threads: int | None = None,
        safe_mode: bool = True,
    ) -> ExpressionClassifier:
        """Load a classifier from a ``.tflite`` or ``.keras`` file.

        Args:
            path: model file; a folder means ``<folder>/expression_cnn.tflite``; ``None`` means
                the shipped model :data:`SHIPPED_MODEL`.
            num_threads: LiteRT CPU threads (``None``: LiteRT's default). Ignored for Keras.
            safe_mode: Keras safe mode for ``.keras`` files (see
                :func:`ml.modelio.load_keras_model`).

        Returns:
            A ready classifier.

        Raises:
            FileNotFoundError: the model file does not exist (the message names the path).
            ValueError: unknown suffix, a model whose input is not ``(N, S, S, 1)`` or whose
                output is not ``(N, 7)``, or a malformed metadata file.
        """
        p = Path(path).expanduser() if path is not None else SHIPPED_MODEL
        if p.is_dir():
            p = p / SHIPPED_MODEL.name
        if not p.is_file():
            hint = (
                " (the shipped model: run `python -m ml.export` to create it)"
                if path is None
                else ""
            )
            raise FileNotFoundError(f"expression model not found: {p}{hint}")
        suffix = p.suffix.lower()
        if suffix == ".tflite":
            backend = _TFLiteBackend(p, num_threads)
        elif suffix in _KERAS_SUFFIXES:
            backend = _KerasBackend(p, safe_mode)
        else:
            raise ValueError(
                f"{p}: unsupported model format {suffix!r}; expected .tflite or .keras"
            )
        clf = cls(p, backend, read_metadata(p))
        probe = clf._backend(np.zeros((1, clf.input_size, clf.input_size, 1), np.float32))
        if probe.shape != (1, NUM_CLASSES):
            raise ValueError(f"{p}: expected output (N, {NUM_CLASSES}), got {probe.shape}")
        return clf

    @property
    def labels(self) -> tuple[str, ...]:
        """The 7 class names in output order (FER2013: angry, disgust, ..., neutral)."""
        return self._labels

    def predict_proba(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities for a batch of face crops.

        Args:
            faces: ``uint8`` crops: an array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB), or a
                list of ``N`` arrays ``(H_i, W_i)`` / ``(H_i, W_i, 3)`` of any sizes. Each crop
                goes through :func:`ml.preprocessing.preprocess_faces` (gray, resized to
                ``input_size``, scaled to [0, 1]).

        Returns:
            ``float32`` ``(N, 7)``: softmax probabilities in :attr:`labels` order, each row in
            ``[0, 1]`` summing to 1. ``N = 0`` gives a ``(0, 7)`` array.

        Raises:
            ValueError: a crop that is not ``uint8``, is empty, or is not ``(H, W)``/``(H, W, 3)``;
                or a single 2-D image instead of a batch.
        """
        if isinstance(faces, np.ndarray):
            if faces.ndim not in (3, 4):
                raise ValueError(
                    f"expected a batch (N, H, W) or (N, H, W, 3), got shape {faces.shape}; "
                    "wrap a single crop in a list"
                )
            if faces.dtype != np.uint8:
                raise ValueError(f"expected uint8 pixels, got {faces.dtype}")
            if faces.ndim == 4 and faces.shape[3] not in (1, 3):
                raise ValueError(f"expected 1 or 3 channels, got shape {faces.shape}")
        elif not isinstance(faces, (list, tuple)):
            raise ValueError(
                f"expected a numpy array or a list of arrays, got {type(faces).__name__}"
            )
        if len(faces) == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        return self.predict_proba_preprocessed(preprocess_faces(faces, self.input_size))

    def predict_proba_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for already preprocessed input.

        Args:
            x: ``float32`` ``(N, S, S, 1)`` with values in ``[0, 1]`` (the output of
                :func:`ml.preprocessing.preprocess_faces`), ``S`` = :attr:`input_size`.

        Returns:
            ``float32`` ``(N, 7)`` probabilities.

        Raises:
            ValueError: wrong shape.
        """
        x = np.ascontiguousarray(x, np.float32)
        expected = (self.input_size, self.input_size, 1)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"expected (N, {', '.join(map(str, expected))}), got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, NUM_CLASSES), np.float32)
        out = np.concatenate(
            [self._backend(x[i : i + MAX_BATCH]) for i in range(0, len(x), MAX_BATCH)]
        )
        if self.output_kind == "probabilities":
            return out.astype(np.float32)
        return softmax(out)

    def __repr__(self) -> str:
        return f"ExpressionClassifier(path={str(self.path)!r}, backend={self.backend!r}, input_size={self.input_size})"


__all__ = ["MAX_BATCH", "SHIPPED_MODEL", "ExpressionClassifier", "read_metadata", "softmax"]
