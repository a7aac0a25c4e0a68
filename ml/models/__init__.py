"""Model registry: ``build_model(arch)`` returns an uncompiled ``keras.Model``.

Every model takes ``float32`` ``(N, 48, 48, 1)`` in ``[0, 1]`` (the output of
:func:`ml.preprocessing.preprocess_faces`) and returns ``(N, 7)`` logits in FER2013 class order.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from ml.models.cnn import build_cnn
from ml.models.resnet50 import build_resnet50

MODELS: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "resnet50": build_resnet50,
}


def build_model(arch: str, **kwargs) -> keras.Model:
    """Build a registered architecture.

    Args:
        arch: a key of :data:`MODELS` (``"cnn"`` or ``"resnet50"``).
        **kwargs: passed to the builder (for example ``weights="imagenet"`` for ResNet50).

    Raises:
        KeyError: unknown architecture; the message lists the known ones.
    """
    try:
        builder = MODELS[arch]
    except KeyError:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(MODELS)}") from None
    return builder(**kwargs)


__all__ = ["MODELS", "build_model"]
