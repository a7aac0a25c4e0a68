"""Training-time augmentation that covers how classroom cameras degrade faces.

:func:`robust_augmentation` is an ``albumentations`` pipeline (Buslaev et al. 2020) on gray
``uint8`` 48x48 faces. Its families are the ones the corruption suite of :mod:`ml.robustness`
measures, drawn from continuous ranges that span the suite's three severities (and a little past
them) so that the model sees every degree of each degradation, not three fixed points:

=============================  ==================================================  ===========
step                           range                                                probability
=============================  ==================================================  ===========
mirror                         left-right                                           0.5
pose and framing               rotate ±25°, shift ±8%, scale 0.85-1.15 (reflect)    0.7
light                          intensity x0.25-1.3 and -0.05..+0.25 offset (dim     0.5
                               rooms, washed-out screens), then gamma 0.6-1.6 (0.5)
blur (one of)                  defocus r 1-4, motion 3-9 px, Gaussian σ 0.5-1.5     0.3
far face                       shrink to 10-36 px wide and scale back up            0.2
sensor noise                   Gaussian, σ 0.01-0.07 of full scale                  0.3
JPEG                           quality 8-60                                         0.25
occlusion                      1-2 patches of 15-40% of the side, random fill       0.2
=============================  ==================================================  ===========

About one face in eight comes out with no photometric change at all (0.5 x 0.7 x 0.8 x
0.7 x 0.75 x 0.8), so clean accuracy is still trained for. The suite's own test images are
never seen in training (PrivateTest), but the suite measures the same families with the same
library, so it is a check of coverage, not an independent test; the shared classroom media and
the outside sets are the independent ones.

``variant="robust-v2"`` (``--augment robust-v2``) changes three rows, aimed at the three
middle-severity corruptions the first shipped student read under 60% (a dim noisy face 59.1%,
defocus r=3 57.6%, a 16-px face 58.0%, PrivateTest):

=============================  ==================================================  ===========
step                           range                                                probability
=============================  ==================================================  ===========
dim sensor (new, after light)  intensity x0.2-0.6, then Gaussian noise σ 0.02-0.07  0.2
blur (one of)                  defocus r 1-4 (half), motion, Gaussian (a quarter)  0.4
far face                       shrink to 10-36 px wide and scale back up            0.3
=============================  ==================================================  ===========

A dim room is dark *and* noisy at once (the camera's gain amplifies sensor noise), which the
first pipeline drew only by chance (light x noise, 0.5 x 0.3, and mostly not dim enough);
rescaling a dim face to normal contrast before the network does not help (PublicTest, the
shipped student, low light x0.35 σ=0.04: 58.8% as is, 58.4% rescaled to FER2013's mean
brightness and contrast), so the network has to see the noise. About one face in fourteen
comes out of ``robust-v2`` with no photometric change (0.5 x 0.8 x 0.6 x 0.7 x 0.7 x 0.75 x
0.8). Measured (model card, "What was tried"): 25 more epochs of the width-0.4375 student on
``robust-v2`` left the three where they were (PublicTest, no offsets: 57.0 / 58.1 / 58.4%
against 57.0 / 58.0 / 57.9%); the student is short of capacity, not of examples. The shipped
student's last three runs were trained on it; what lifted the three over 60% was giving the
student its capacity back (dropout 0.3 -> 0.05, no label smoothing: PublicTest 60.4 / 60.1 /
60.9%, model card, "What was tried").

:func:`augment_batch` applies the pipeline to a batch; :func:`tf_augment` wraps that for a
``tf.data`` pipeline (``tf.numpy_function``; albumentations and OpenCV release the GIL, so a
parallel map uses both cores).
"""

from __future__ import annotations

import numpy as np

from ml.robustness import import_albumentations

VARIANTS: tuple[str, ...] = ("robust", "robust-v2")
"""The pipelines :func:`robust_augmentation` builds (the module docstring's two tables)."""


def robust_augmentation(seed: int | None = None, variant: str = "robust"):
    """The training pipeline of the module docstring's tables.

    Args:
        seed: seed of the pipeline's random state (``None``: unseeded).
        variant: one of :data:`VARIANTS`.

    Returns:
        An ``albumentations.Compose`` taking ``image=`` a gray ``uint8`` ``(48, 48)`` array and
        returning a ``uint8`` array of the same shape.

    Raises:
        ValueError: ``variant`` is not one of :data:`VARIANTS`.
    """
    import cv2

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    v2 = variant == "robust-v2"
    A = import_albumentations()  # noqa: N806
    dim_sensor = [
        A.Sequential(
            [
                # out = img * (1 + c): c in -0.8..-0.4 is intensity x0.2..0.6
                A.RandomBrightnessContrast(
                    brightness_limit=(0.0, 0.0), contrast_limit=(-0.8, -0.4), p=1.0
                ),
                A.GaussNoise(std_range=(0.02, 0.07), p=1.0),
            ],
            p=0.2,
        )
    ]
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                rotate=(-25, 25),
                translate_percent=(-0.08, 0.08),
                scale=(0.85, 1.15),
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.7,
            ),
            A.Sequential(
                [
                    # out = img * (1 + contrast) + brightness * 255 (brightness_by_max)
                    A.RandomBrightnessContrast(
                        brightness_limit=(-0.05, 0.25), contrast_limit=(-0.75, 0.3), p=1.0
                    ),
                    A.RandomGamma(gamma_limit=(60, 160), p=0.5),
                ],
                p=0.5,
            ),
            *(dim_sensor if v2 else []),
            A.OneOf(
                [
                    # OneOf draws a child with probability proportional to its p
                    A.Defocus(radius=(1, 4), alias_blur=(0.1, 0.3), p=1.0),
                    A.MotionBlur(blur_limit=(3, 9), allow_shifted=False, p=0.5 if v2 else 1.0),
                    A.GaussianBlur(sigma_limit=(0.5, 1.5), blur_limit=0, p=0.5 if v2 else 1.0),
                ],
                p=0.4 if v2 else 0.3,
            ),
            A.Downscale(
                scale_range=(10 / 48, 36 / 48),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=0.3 if v2 else 0.2,
            ),
            A.GaussNoise(std_range=(0.01, 0.07), p=0.3),
            A.ImageCompression(compression_type="jpeg", quality_range=(8, 60), p=0.25),
            A.CoarseDropout(
                num_holes_range=(1, 2),
                hole_height_range=(0.15, 0.4),
                hole_width_range=(0.15, 0.4),
                fill="random_uniform",
                p=0.2,
            ),
        ],
        seed=seed,
    )


def augment_batch(pipeline, images: np.ndarray) -> np.ndarray:
    """Apply ``pipeline`` to every face of a batch.

    Args:
        pipeline: from :func:`robust_augmentation`.
        images: ``uint8`` ``(N, 48, 48)`` or ``(N, 48, 48, 1)`` gray faces.

    Returns:
        ``float32`` ``(N, 48, 48, 1)`` in ``[0, 1]`` (the model input, as
        :func:`ml.preprocessing.preprocess_faces` scales it).

    Raises:
        ValueError: ``images`` is not ``uint8`` or not a batch of 2-D faces.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 faces, got {images.dtype}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) or (N, H, W, 1) faces, got shape {images.shape}")
    out = np.empty((*images.shape, 1), np.float32)
    for i, face in enumerate(images):
        out[i, :, :, 0] = pipeline(image=np.ascontiguousarray(face))["image"]
    out /= 255.0
    return out


def tf_augment(seed: int, variant: str = "robust"):
    """A ``tf.data`` map function: a ``uint8`` ``(B, 48, 48, 1)`` batch -> augmented float32.

    Each call of the returned function draws from one seeded pipeline (``variant``, see
    :func:`robust_augmentation`), so a run is repeatable up to the order in which parallel map
    calls reach it.
    """
    import tensorflow as tf

    pipeline = robust_augmentation(seed, variant)

    def run(batch: np.ndarray) -> np.ndarray:
        return augment_batch(pipeline, batch)

    def fn(images):
        out = tf.numpy_function(run, [images], tf.float32, stateful=True)
        out.set_shape([images.shape[0], images.shape[1], images.shape[2], 1])
        return out

    return fn


__all__ = ["VARIANTS", "augment_batch", "robust_augmentation", "tf_augment"]
