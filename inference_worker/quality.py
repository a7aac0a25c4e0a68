"""The face-quality gate: read an expression only on faces big, frontal and sharp enough.

A face that fails the gate is still a face (it counts for faces now, attention and tracks), but
the classifier never sees it and no expression is stored for it. Each failure has one reason,
checked in this order (:data:`contracts.QUALITY_ISSUES`):

``too_small``
    the detector's box is shorter than :data:`MIN_FACE_PX` on its longer side, in pixels of the
    analysed frame;
``turned_away``
    the head pose (:mod:`inference_worker.headpose`) has ``|yaw| > MAX_YAW_DEG`` or
    ``|pitch| > MAX_PITCH_DEG`` (faces without keypoints have no pose and pass this check);
``too_dark``
    the crop's contrast is under :data:`MIN_SNR` times its sensor noise (:func:`snr`): what a
    dim room does to a webcam, which raises its gain. Brightness itself is not tested (a dark
    skin or a dark background is not a reason to skip a face), and noise must be tested
    before sharpness, because noise raises the Laplacian;
``blurred``
    the sharpness (:func:`sharpness`) of the crop as the classifier sees it is below
    :data:`MIN_SHARPNESS`.

The thresholds were chosen by measuring the shipped classifier's accuracy against each
feature on PublicTest, clean and under :mod:`ml.robustness`'s corruptions, and checked on
PrivateTest and on the shared real media
(``python -m inference_worker.quality_curves``; the curves and the chosen points are in
``ml/MODEL_CARD.md``, "Face-quality gate").
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from contracts import QUALITY_ISSUES, pipeline
from ml.preprocessing import INPUT_SIZE, preprocess_faces, to_gray

__all__ = [
    "MAX_PITCH_DEG",
    "MAX_YAW_DEG",
    "MIN_FACE_PX",
    "MIN_SHARPNESS",
    "MIN_SNR",
    "QUALITY_ISSUES",
    "QualityGate",
    "sharpness",
    "snr",
    "snr_of_inputs",
]

MIN_FACE_PX: float = pipeline.MIN_FACE_PX
"""Smallest longer side of the detector's box, pixels, for a face to be read.

Measured (PublicTest under ``low_resolution``): the shipped model's accuracy is 70% at a 40-px
box (the 48-px frame), 55% at 20 px, 42% at 13 px and 29% at 10 px, where it is no better than
always answering the most common class (24%). The limit sits between the last two: a 13-px
face is read badly but well above chance, and a classroom camera's faces are often that small
(``shared/media/classroom.gif``: 13-22 px); the board says how many faces were read.
"""

MAX_YAW_DEG: float = pipeline.MAX_YAW_DEG
"""Largest ``|yaw|``, degrees, of a face whose expression is read.

Measured on clean PublicTest faces (BlazeFace keypoints of the face scaled to 192 px): 71% at
0-10 degrees, 66% at 20-30, 63% at 30-40; FER2013 has almost no face turned further (45 of 3,589
beyond 40 degrees), so the limit sits where the data end and one eye starts to hide.
"""

MAX_PITCH_DEG: float = pipeline.MAX_PITCH_DEG
"""Largest ``|pitch|``, degrees, of a face whose expression is read (accuracy is flat, 70%, up to
30 degrees on clean PublicTest; 11 faces lie beyond)."""

MIN_SNR: float = pipeline.MIN_SNR
"""Smallest contrast-to-noise ratio (:func:`snr`) of a face whose expression is read.

Measured on PublicTest, clean and corrupted: accuracy is 19-32% below 3 (nearly all of it
``low_light`` severities 2 and 3) and 51-64% above; 2 of 3,589 clean faces fall below.
"""

MIN_SHARPNESS: float = pipeline.MIN_SHARPNESS
"""Smallest sharpness (:func:`sharpness`) of a face whose expression is read.

Measured on PublicTest, clean and corrupted (``low_light`` left out, its noise inflates the
measure, and ``low_resolution``, whose small faces are measured at their own size): accuracy
is 25-36% below 60, 41% at 60-80, 46% at 80-100, 51% at 100-130 and 54-61% above; a clean
48-px FER2013 face has a median of about 2,000 (5th percentile 750).
"""


_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def snr_of_inputs(inputs: np.ndarray) -> np.ndarray:
    """Contrast-to-noise ratio of classifier inputs: standard deviation over noise sigma.

    The noise sigma is Immerkaer's fast estimate ("Fast Noise Variance Estimation", Computer
    Vision and Image Understanding 64(2), 1996): ``sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * N|``
    with ``N`` the difference of two Laplacians, which cancels image structure and keeps noise.

    Args:
        inputs: ``float32`` ``(N, S, S, 1)`` in ``[0, 1]`` (:func:`ml.preprocessing.preprocess_faces`).

    Returns:
        ``float64`` ``(N,)``, ``>= 0``: about 12 for a clean FER2013 face, 2 for a dim, noisy
        one; a flat crop gives 0, a noiseless textured one a large value (capped at 1e6).
    """
    out = np.empty(len(inputs), np.float64)
    for i, face in enumerate(inputs):
        gray = face[:, :, 0] * np.float32(255.0)
        residual = cv2.filter2D(gray, cv2.CV_32F, _NOISE_MASK)[1:-1, 1:-1]
        sigma = np.sqrt(np.pi / 2.0) * np.abs(residual).sum(dtype=np.float64) / (6 * residual.size)
        std = float(gray.std(dtype=np.float64))
        out[i] = min(std / sigma, 1e6) if sigma > 1e-9 else (0.0 if std == 0 else 1e6)
    return out


def snr(faces: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """:func:`snr_of_inputs` of face crops (any size, gray or RGB ``uint8``)."""
    return snr_of_inputs(preprocess_faces(faces, INPUT_SIZE))


def sharpness(faces: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """Sharpness of face crops: variance of the Laplacian of the gray crop, 0..255 scale.

    The variance of the Laplacian (Pech-Pacheco et al., "Diatom autofocusing in brightfield
    microscopy: a comparative study", ICPR 2000) is the standard no-reference focus measure:
    blur removes the high frequencies that the 3x3 Laplacian responds to. A crop larger than the
    classifier's 48x48 input is measured as the classifier sees it (shrunk to 48x48 with
    ``INTER_AREA``, as :func:`ml.preprocessing.preprocess_faces` does); a smaller one at its own
    size, so that a small but sharp face is not called blurred (its size is tested apart).

    Args:
        faces: ``N`` ``uint8`` crops, gray ``(H, W)`` or RGB ``(H, W, 3)``, any size (a list,
            or one array).

    Returns:
        ``float64`` ``(N,)``, ``>= 0``: 0 for a flat crop; a sharp 48-px FER2013 face has a
        median of about 2,000.

    Raises:
        ValueError: as :func:`ml.preprocessing.to_gray` (empty, not ``uint8``, bad shape).
    """
    out = np.empty(len(faces), np.float64)
    for i, face in enumerate(faces):
        face = to_gray(face, index=i)
        if face.shape[0] > INPUT_SIZE or face.shape[1] > INPUT_SIZE:
            face = cv2.resize(face, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        out[i] = cv2.Laplacian(face, cv2.CV_32F, ksize=1).var(dtype=np.float64)
    return out


@dataclass(frozen=True, slots=True)
class QualityGate:
    """Thresholds of the gate; the defaults are the measured ones (module docstring).

    Attributes:
        min_face_px: smallest longer box side, pixels.
        max_yaw_deg: largest ``|yaw|``, degrees.
        max_pitch_deg: largest ``|pitch|``, degrees.
        min_snr: smallest :func:`snr`.
        min_sharpness: smallest :func:`sharpness`.
    """

    min_face_px: float = MIN_FACE_PX
    max_yaw_deg: float = MAX_YAW_DEG
    max_pitch_deg: float = MAX_PITCH_DEG
    min_snr: float = MIN_SNR
    min_sharpness: float = MIN_SHARPNESS

    def issue_before_crop(
        self, face_px: float, yaw_deg: float | None, pitch_deg: float | None
    ) -> str | None:
        """The first failing check that needs no pixels (size, then pose), or ``None``.

        Args:
            face_px: the box's longer side, pixels.
            yaw_deg, pitch_deg: head pose in degrees, or ``None`` (no pose: passes).

        Returns:
            ``"too_small"``, ``"turned_away"`` or ``None``.
        """
        if face_px < self.min_face_px:
            return "too_small"
        if yaw_deg is not None and abs(yaw_deg) > self.max_yaw_deg:
            return "turned_away"
        if pitch_deg is not None and abs(pitch_deg) > self.max_pitch_deg:
            return "turned_away"
        return None

    def issue_of_pixels(self, snr: float, sharpness: float) -> str | None:
        """``"too_dark"`` (low :func:`snr`), then ``"blurred"`` (low :func:`sharpness`), or ``None``."""
        if snr < self.min_snr:
            return "too_dark"
        if sharpness < self.min_sharpness:
            return "blurred"
        return None

    def issue(
        self,
        face_px: float,
        yaw_deg: float | None,
        pitch_deg: float | None,
        snr: float,
        sharpness: float,
    ) -> str | None:
        """The reason the face is not read (one of :data:`QUALITY_ISSUES`), or ``None``.

        Args:
            face_px: the box's longer side, pixels.
            yaw_deg, pitch_deg: head pose in degrees, or ``None``.
            snr: :func:`snr` of the crop.
            sharpness: :func:`sharpness` of the crop.
        """
        return self.issue_before_crop(face_px, yaw_deg, pitch_deg) or self.issue_of_pixels(
            snr, sharpness
        )
