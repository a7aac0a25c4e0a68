"""Loading trained Keras models for export, evaluation and inference.

Training may run under a mixed-precision policy (``mixed_bfloat16`` on CPUs with AMX,
``mixed_float16`` on GPUs), and Keras stores that policy in every layer's config. A model loaded
as is keeps computing in 16-bit floats, which is slower on most CPUs and gives TFLite converters
extra casts. :func:`load_keras_model` therefore rebuilds the model with every layer in
``float32`` (the variables are float32 in both cases, so no weight is changed).

TensorFlow and Keras are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_POLICY_CLASSES = {"DTypePolicy", "Policy", "FloatDTypePolicy"}


def _policy_config(obj: Any, policy: str = "float32") -> Any:
    """Return a copy of a Keras config with every serialized dtype policy set to ``policy``."""
    if isinstance(obj, dict):
        if obj.get("class_name") in _POLICY_CLASSES and isinstance(obj.get("config"), dict):
            return {**obj, "config": {**obj["config"], "name": policy}}
        return {k: _policy_config(v, policy) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_policy_config(v, policy) for v in obj]
    if obj in ("float32", "float16", "mixed_float16", "mixed_bfloat16"):
        return policy
    return obj


def _rebuild(model, policy: str):
    clone = model.__class__.from_config(_policy_config(model.get_config(), policy))
    clone.set_weights(model.get_weights())
    # A Sequential without an Input layer is built lazily; functional models are built already.
    if not clone.built:  # pragma: no cover - our builders are functional
        clone.build(model.input_shape)
    return clone


def as_float32(model):
    """Rebuild a functional or sequential Keras model with all layers computing in float32.

    Args:
        model: a built ``keras.Model``.

    Returns:
        The same model object when every layer already computes in float32, else a new model
        with the same architecture and weights.
    """
    if all(
        layer.dtype_policy.compute_dtype == "float32"
        and layer.dtype_policy.variable_dtype == "float32"
        for layer in all_layers(model)
    ):
        return model
    return _rebuild(model, "float32")


def with_float16_weights(model):
    """A copy of a model whose variables are stored as float16, to ship at half the size.

    :func:`load_keras_model` turns it back into a float32 model (weights cast up exactly), so the
    only change is float16 rounding of the weights (relative error <= 2**-11), the same as the
    float16 LiteRT export.

    Args:
        model: a built functional ``keras.Model``.

    Returns:
        A new ``keras.Model`` under the ``float16`` dtype policy with the same architecture.
    """
    return _rebuild(model, "float16")


def all_layers(model):
    """Yield every layer of a Keras model, depth first, including the layers of nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def load_keras_model(path: str | os.PathLike, *, float32: bool = True, safe_mode: bool = True):
    """Load a ``.keras`` (or legacy ``.h5``/``.hdf5``) model for inference.

    Args:
        path: model file.
        float32: rebuild in float32 when it was saved under a mixed-precision policy.
        safe_mode: Keras safe mode; ``False`` is needed only for models with ``Lambda`` layers
            (ResNet50 built with ``weights="imagenet"``). Only disable it for files you trust.

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Keras could not deserialize the file (the message says why).
    """
    import keras

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    try:
        model = keras.models.load_model(p, compile=False, safe_mode=safe_mode)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types; re-raise one clear error
        hint = (
            " (the model contains a Lambda layer: pass safe_mode=False / --unsafe-deserialization "
            "if you trust the file)"
            if "lambda" in str(exc).lower()
            else ""
        )
        raise ValueError(f"could not load Keras model {p}: {exc}{hint}") from exc
    return as_float32(model) if float32 else model


__all__ = ["all_layers", "as_float32", "load_keras_model", "with_float16_weights"]
