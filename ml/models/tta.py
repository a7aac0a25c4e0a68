"""Test-time augmentation (TTA) built into the model graph.

:func:`with_tta` wraps a trained classifier so that one call classifies a few views of each face
(the full face, corner crops, mirror images) and averages their logits. Because the views live
in the graph, every consumer of the exported file (the LiteRT ``.tflite`` on CPU workers, the
``.keras`` on GPU workers, :mod:`ml.evaluate`) gets the same, measured accuracy; there is no
separate TTA code path to keep in step.

The wrapper uses built-in Keras layers only (``Cropping2D``, ``Resizing``, ``Reshape``, a frozen
``Dense`` whose weight is the exchange matrix, ``Average``), so the saved ``.keras`` loads in
Keras safe mode and converts to LiteRT without custom operators.

Views are the ones of :func:`ml.evaluate.tta_views` (Pramerdorfer & Kampel 2016 use the same
corner/centre crops plus mirroring): a view name is ``full``, ``top_left``, ``top_right``,
``bottom_left``, ``bottom_right`` or ``centre``, optionally suffixed ``_flip`` (mirrored
left-right). Crops are ``S - crop`` pixels square, resized back to ``S`` with bilinear
interpolation (what :func:`ml.preprocessing.preprocess_faces` does with ``INTER_LINEAR`` when
enlarging). Logits are averaged (a geometric mean of the views' probabilities after softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers

CROP_WINDOWS: tuple[str, ...] = (
    "full",
    "top_left",
    "top_right",
    "bottom_left",
    "bottom_right",
    "centre",
)
"""Names of the crop windows; each may be suffixed ``_flip``."""

DEFAULT_VIEWS: tuple[str, ...] = ("full", "top_right_flip", "bottom_left_flip")
"""The shipped view set: the 3-view subset of the 12 :func:`ml.evaluate.tta_views` with the best
PublicTest accuracy for the shipped width-0.75 CNN (68.2% -> 69.7% PublicTest; chosen by
``python -m ml.evaluate MODEL --select-tta-views 3``, which never reads PrivateTest). Three views
keep the per-face cost within a 2 ms per-face budget with a dynamic-range-quantized LiteRT
model."""


def _crop_box(window: str, size: int, crop: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` pixels to cut for a window (Cropping2D's format)."""
    c, half = crop, crop // 2
    boxes = {
        "full": ((0, 0), (0, 0)),
        "top_left": ((0, c), (0, c)),
        "top_right": ((0, c), (c, 0)),
        "bottom_left": ((c, 0), (0, c)),
        "bottom_right": ((c, 0), (c, 0)),
        "centre": ((half, c - half), (half, c - half)),
    }
    return boxes[window]


def parse_view(name: str) -> tuple[str, bool]:
    """Split a view name into ``(window, mirrored)``.

    Raises:
        ValueError: unknown window name; the message lists the known views.
    """
    window, flip = (name[: -len("_flip")], True) if name.endswith("_flip") else (name, False)
    if window not in CROP_WINDOWS:
        known = ", ".join(f"{w}[_flip]" for w in CROP_WINDOWS)
        raise ValueError(f"unknown TTA view {name!r}; known: {known}")
    return window, flip


def with_tta(
    model: keras.Model, views: Sequence[str] = DEFAULT_VIEWS, crop: int = 4
) -> keras.Model:
    """Wrap a classifier so that it averages the logits of several views of each face.

    Args:
        model: a float32 classifier, ``(N, S, S, 1)`` in ``[0, 1]`` -> ``(N, 7)`` logits.
        views: view names (see the module docstring), at least one, no repeats.
        crop: pixels cut from the side for the crop windows, ``0 < crop < S``
            (:data:`ml.evaluate.TTA_CROP` = 4 for 48-px faces).

    Returns:
        A ``keras.Model`` with the same input and output signature (``(N, 7)`` logits); the
        wrapped model's weights are shared, not copied. Cost: ``len(views)`` forward passes.

    Raises:
        ValueError: no views, a repeated or unknown view, a bad ``crop``, or a model whose input
            is not ``(None, S, S, 1)``.
    """
    views = list(views)
    if not views:
        raise ValueError("with_tta needs at least one view")
    if len(set(views)) != len(views):
        raise ValueError(f"repeated TTA view in {views}")
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[1] is None or shape[3] != 1:
        raise ValueError(f"expected a model input (None, S, S, 1), got {shape}")
    size = int(shape[1])
    if not 0 < crop < size:
        raise ValueError(f"crop must be in (0, {size}), got {crop}")
    parsed = [parse_view(v) for v in views]

    inputs = keras.Input((size, size, 1), name="face")
    flip = None
    if any(mirrored for _, mirrored in parsed):
        # Mirroring = multiplying the width axis by the exchange matrix J (J[i, S-1-i] = 1).
        flip = layers.Dense(size, use_bias=False, trainable=False, name="tta_mirror")
        flip.build((None, size, size))
        flip.set_weights([np.eye(size, dtype=np.float32)[::-1]])
    logits = []
    for name, (window, mirrored) in zip(views, parsed, strict=True):
        x = inputs
        if window != "full":
            x = layers.Cropping2D(_crop_box(window, size, crop), name=f"tta_{name}_crop")(x)
            x = layers.Resizing(size, size, interpolation="bilinear", name=f"tta_{name}_resize")(x)
        if mirrored:
            x = layers.Reshape((size, size), name=f"tta_{name}_to2d")(x)
            x = flip(x)
            x = layers.Reshape((size, size, 1), name=f"tta_{name}_to3d")(x)
        logits.append(model(x))
    out = logits[0] if len(logits) == 1 else layers.Average(name="tta_mean_logits")(logits)
    return keras.Model(inputs, out, name=f"{model.name}_tta{len(views)}")
