"""ResNet50 (He et al., 2016) through ``keras.applications.ResNet50``.

The grey 48x48 face is resized to ``input_size`` (default 96, the smallest multiple of 32 that
keeps a 3x3 map before pooling) and repeated to 3 channels. With ``weights="imagenet"`` the
ImageNet weights are downloaded by Keras at build time (needs the internet), and the input is
scaled as ``keras.applications.resnet50.preprocess_input`` expects.
"""

from __future__ import annotations

import keras
from keras import layers

from ml.labels import NUM_CLASSES
from ml.preprocessing import INPUT_SIZE


def build_resnet50(
    weights: str | None = None,
    input_size: int = 96,
    dropout: float = 0.3,
    num_classes: int = NUM_CLASSES,
) -> keras.Model:
    """Build ResNet50 with a 7-way logits head.

    Args:
        weights: ``None`` (random init, works offline) or ``"imagenet"`` (downloaded).
        input_size: side the 48x48 face is resized to before the backbone (>= 32).
        dropout: dropout before the logits layer.
        num_classes: number of output logits.

    Returns:
        An uncompiled ``keras.Model``: ``float32`` ``(N, 48, 48, 1)`` in ``[0, 1]`` ->
        ``(N, num_classes)`` logits.

    Raises:
        ValueError: ``input_size`` below 32 (ResNet50 downsamples by 32).
    """
    if input_size < 32:
        raise ValueError(f"input_size must be >= 32 for ResNet50, got {input_size}")
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="face")
    x = layers.Resizing(input_size, input_size, name="resize")(inputs)
    x = layers.Concatenate(name="to_rgb")([x, x, x])
    if weights == "imagenet":
        # caffe-style: RGB->BGR, subtract ImageNet means, on a 0..255 scale.
        x = layers.Rescaling(255.0, name="to_255")(x)
        x = layers.Lambda(keras.applications.resnet50.preprocess_input, name="imagenet_prep")(x)
    backbone = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=(input_size, input_size, 3), pooling="avg"
    )
    x = backbone(x)
    x = layers.Dropout(dropout, name="head_drop")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="resnet50")
