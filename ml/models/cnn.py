"""Our custom CNN for 48x48 grey faces.

Architecture (VGG-style, as in Pramerdorfer & Kampel 2016 and Khaireddin & Chen 2021, which
reach 72-73% on FER2013 PrivateTest with plain stacked 3x3 convolutions):

    input (48, 48, 1)
    4 stages of [conv3x3 -> BN -> ReLU] x 2, then 2x2 max-pool and dropout;
      widths 64, 128, 256, 512 (times ``width``), feature maps 48 -> 24 -> 12 -> 6 -> 3
    global average pooling -> dropout -> dense 256 -> BN -> ReLU -> dropout -> dense 7 (logits)

At ``width=0.5`` (the default) this is about 1.2M parameters.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from ml.labels import NUM_CLASSES
from ml.preprocessing import INPUT_SIZE


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def build_cnn(
    width: float = 0.5,
    dropout: float = 0.3,
    input_size: int = INPUT_SIZE,
    num_classes: int = NUM_CLASSES,
) -> keras.Model:
    """Build the custom CNN.

    Args:
        width: channel multiplier on the base widths (64, 128, 256, 512).
        dropout: dropout rate after each stage and before the classifier head.
        input_size: side of the square grey input.
        num_classes: number of output logits.

    Returns:
        An uncompiled ``keras.Model``: ``float32`` ``(N, input_size, input_size, 1)`` in
        ``[0, 1]`` -> ``(N, num_classes)`` logits (float32 even under mixed precision).
    """
    inputs = keras.Input((input_size, input_size, 1), name="face")
    x = inputs
    for stage, base in enumerate((64, 128, 256, 512), start=1):
        filters = max(8, int(base * width))
        x = _conv_bn_relu(x, filters, f"s{stage}a")
        x = _conv_bn_relu(x, filters, f"s{stage}b")
        x = layers.MaxPooling2D(2, name=f"s{stage}_pool")(x)
        x = layers.Dropout(dropout * 0.5 if stage < 3 else dropout, name=f"s{stage}_drop")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(256, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    x = layers.Dropout(dropout, name="fc_drop")(x)
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name="cnn")


def slim_cnn(source: keras.Model, width: float, dropout: float = 0.3) -> keras.Model:
    """A narrower CNN initialised from a trained wider one by network slimming.

    Network slimming (Liu et al. 2017, "Learning Efficient Convolutional Networks through Network
    Slimming", ICCV): the batch-norm scale ``|gamma|`` of a channel measures how much the
    network uses it. For every convolution the channels with the largest ``|gamma|`` are kept
    (as many as ``build_cnn(width)`` has), and their kernels, batch-norm parameters and
    statistics, and the matching input rows of the next layer are copied. The head (dense 256
    and the logits) keeps its size. The result is a starting point for fine-tuning (with
    distillation from ``source``), not a finished model.

    Args:
        source: a trained ``build_cnn`` model (layer names ``s1a_conv`` ... ``logits``), wider
            than or as wide as ``width``.
        width: the new channel multiplier.
        dropout: dropout rate of the new model.

    Returns:
        A ``build_cnn(width, dropout)`` model holding the selected weights.

    Raises:
        ValueError: ``source`` is not a ``build_cnn`` model, or a stage of it is narrower than
            the requested width.
    """
    target = build_cnn(width=width, dropout=dropout, input_size=int(source.input_shape[1]))
    try:
        layers_of = {layer.name: layer for layer in source.layers}
        kept_in = np.arange(1)  # the gray input channel
        for stage in range(1, 5):
            for half in ("a", "b"):
                name = f"s{stage}{half}"
                kernel = layers_of[f"{name}_conv"].get_weights()[0]
                gamma, beta, mean, var = layers_of[f"{name}_bn"].get_weights()
                wanted = target.get_layer(f"{name}_conv").filters
                if wanted > kernel.shape[-1]:
                    raise ValueError(
                        f"{name}: source has {kernel.shape[-1]} channels, fewer than {wanted}"
                    )
                kept = np.sort(np.argsort(-np.abs(gamma), kind="stable")[:wanted])
                target.get_layer(f"{name}_conv").set_weights([kernel[:, :, kept_in][..., kept]])
                target.get_layer(f"{name}_bn").set_weights(
                    [gamma[kept], beta[kept], mean[kept], var[kept]]
                )
                kept_in = kept
        target.get_layer("fc").set_weights([layers_of["fc"].get_weights()[0][kept_in]])
        for name in ("fc_bn", "logits"):
            target.get_layer(name).set_weights(layers_of[name].get_weights())
    except KeyError as exc:
        raise ValueError(f"source is not a build_cnn model: no layer {exc}") from None
    return target
