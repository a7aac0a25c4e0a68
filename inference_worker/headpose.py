"""Head pose (yaw, pitch) and "attentive" from BlazeFace's 6 keypoints, in closed form.

Pure numpy and :mod:`math`: no model, no landmarks beyond what the face detector already gives.

Keypoints, in BlazeFace's order (:class:`inference_worker.pipeline.Detection`): right eye, left eye,
nose tip, mouth centre, right ear tragion, left ear tragion (the SUBJECT's right/left, so on a
frontal face the right eye and right ear appear on the image's left). Coordinates are pixels
with a top-left origin (x right, y down), or any unit that is the same along x and y.

Conventions (those of :class:`contracts.FacePayload`): angles in degrees; yaw 0 = facing the camera, positive =
face turned towards the image's right side (the viewer's right); pitch 0 = facing the camera,
positive = chin up.

Derivation (weak-perspective, i.e. orthographic projection plus scale, which holds when the head
is small against its distance to the camera):

1. Roll is removed first: every point is rotated about the eye midpoint so that the eye line is
   horizontal (a head tilted to the shoulder changes neither yaw nor pitch).
2. **Yaw, cylinder head model.** Put the ear tragions at ``x = -R, +R`` and the nose tip ``D`` in
   front of their midpoint. Turned by ``yaw`` about the vertical axis (``x' = x cos(yaw) +
   z sin(yaw)``), the ears project to ``±R cos(yaw)`` about their midpoint and the nose tip to
   ``D sin(yaw)`` from it: the nose's horizontal offset from the ear midpoint is
   ``o = D sin(yaw)`` and the ear-to-ear distance ``w = 2R cos(yaw)``; hence
   ``tan(yaw) = (2R / D) * o / w``. The same
   holds for the eyes (``o_eye / w_eye``, with the eyes' half distance and depth). We take the
   MEAN of the two ratios ``o / w`` (ears) and ``o_eye / w_eye`` (eyes): on the 10 frontal and
   slightly turned faces of the shared photos both ratios agree within ~0.05 except where hair
   hides an ear (BlazeFace then guesses the tragion, off by up to 0.1), and averaging halves
   that error. ``2R / D`` is :data:`YAW_GAIN` = 2 (nose tip about one head radius in front of
   the ear axis; the MediaPipe canonical face model's eyes give 1.7, so angles are, if anything,
   slightly overestimated: conservative for "attentive").
3. **Pitch, from the nose between the eyes and the mouth.** In the face's side view (y up, z
   towards the camera) let the eye midpoint, nose tip and mouth centre be ``E, N, M``. Turned by
   ``pitch`` about the horizontal axis, a point projects to ``y cos(pitch) + z sin(pitch)``, so
   the nose's vertical position between eye line and mouth, ``r = (y_N - y_E) / (y_M - y_E)``
   in image coordinates, is ``r = (a + b t) / (1 + c t)`` with ``t = tan(pitch)``,
   ``a = r0`` (the frontal ratio), ``b = (z_E - z_N) / h`` and ``c = (z_E - z_M) / h`` where ``h``
   is the eye-to-mouth height. Solving for ``t``: ``tan(pitch) = (r0 - r) / (NOSE_DEPTH -
   MOUTH_DEPTH * r)`` with ``NOSE_DEPTH = -b``, ``MOUTH_DEPTH = -c`` (depths in front of the eyes,
   in units of ``h``). Depths from MediaPipe's canonical face model
   (``mediapipe/modules/face_geometry/data/canonical_face_model.obj``, Apache-2.0, units ~cm):
   eye centres at y ~2.6, z ~3.8 (between the eye corners and lids), nose tip (landmark 1)
   y -1.13, z 7.48; mouth centre (landmarks 13, 14) y -4.27, z 5.31; so ``h`` = 6.87,
   :data:`NOSE_DEPTH` = 3.68 / 6.87 = 0.54, :data:`MOUTH_DEPTH` = 1.51 / 6.87 = 0.22.
   :data:`FRONTAL_NOSE_RATIO` ``r0`` is calibrated on real faces instead (see there).

Yaw and pitch are estimated separately, so they interact: on a synthetic head that fits the
model exactly, pure yaw and pure pitch are recovered exactly, pitch is exact at any yaw, and yaw
is underestimated with the chin down (20 degrees of yaw read as 16.7 at pitch -15 and as 26 for
40 at pitch -30) and slightly overestimated with the chin up (22 for 20 at pitch +15).

Accuracy: a coarse estimate (BlazeFace keypoints are a few pixels precise and the head model is
generic), good to tell "facing the screen" from "turned away / looking down", not to measure
angles to a degree. Yaw and pitch are in ``(-90, 90)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contracts import pipeline
from contracts.pipeline import is_attentive

__all__ = [
    "ATTENTIVE_MAX_PITCH_DEG",
    "ATTENTIVE_MAX_YAW_DEG",
    "FRONTAL_NOSE_RATIO",
    "MOUTH_DEPTH",
    "NOSE_DEPTH",
    "YAW_GAIN",
    "HeadPose",
    "estimate_head_pose",
    "is_attentive",
]

YAW_GAIN: float = pipeline.YAW_GAIN
"""``2R / D`` of the cylinder model: ear-to-ear (or eye-to-eye) distance over the nose tip's depth
in front of them. 2 = nose tip one head radius in front of the ear axis."""

FRONTAL_NOSE_RATIO: float = pipeline.FRONTAL_NOSE_RATIO
"""``r0``: the nose tip's vertical position between the eye line (0) and the mouth centre (1) on
a face looking straight at the camera. Calibrated on the 10 frontal faces of
``shared/media/webcam_posed_expressions_4.jpg`` and ``group_photo_6_people.jpg`` with BlazeFace
full range: r = 0.49, 0.53, 0.55, 0.48 and 0.54, 0.50, 0.42, 0.37, 0.46, 0.55 (median 0.495;
the lowest are a selfie taken from below and a head tipped back). MediaPipe's canonical face
model gives 0.54."""

NOSE_DEPTH: float = pipeline.NOSE_DEPTH
"""Nose tip depth in front of the eye centres, in units of the eye-to-mouth height (MediaPipe
canonical face model, see the module docstring)."""

MOUTH_DEPTH: float = pipeline.MOUTH_DEPTH
"""Mouth centre depth in front of the eye centres, in units of the eye-to-mouth height (same
source)."""

ATTENTIVE_MAX_YAW_DEG: float = pipeline.ATTENTIVE_MAX_YAW_DEG
"""Largest ``|yaw|`` still counted as facing the screen, degrees. A laptop screen seen from ~50 cm
spans about ±17 degrees horizontally; reading its edge turns the head less than the eyes (gaze
shifts within ~±15-20 degrees are mostly eye movements), so 30 leaves room for estimation error
while a head turned to a neighbour or a window (45-90) is not attentive."""

ATTENTIVE_MAX_PITCH_DEG: float = pipeline.ATTENTIVE_MAX_PITCH_DEG
"""Largest ``|pitch|`` still counted as facing the screen, degrees. A webcam above the screen sees a
student reading it with the head ~5-15 degrees down; a head bent over a desk or phone is 30+
degrees down."""

_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class HeadPose:
    """Head orientation relative to the camera.

    Attributes:
        yaw_deg: degrees in ``(-90, 90)``; 0 = facing the camera, positive = turned towards the
            image's right side.
        pitch_deg: degrees in ``(-90, 90)``; 0 = facing the camera, positive = chin up.
        attentive: ``|yaw_deg| <= ATTENTIVE_MAX_YAW_DEG`` and ``|pitch_deg| <=
            ATTENTIVE_MAX_PITCH_DEG``.
    """

    yaw_deg: float
    pitch_deg: float
    attentive: bool


def estimate_head_pose(keypoints: Sequence[Sequence[float]] | np.ndarray | None) -> HeadPose | None:
    """Yaw, pitch and "attentive" from BlazeFace's 6 keypoints (formulas in the module docstring).

    Args:
        keypoints: 6 ``(x, y)`` points in BlazeFace order (right eye, left eye, nose tip, mouth
            centre, right ear tragion, left ear tragion), pixels or any isotropic unit, top-left
            origin; or ``None``.

    Returns:
        The :class:`HeadPose`, or ``None`` when ``keypoints`` is ``None`` or degenerate (eyes on
        top of each other, mouth level with the eyes, a face seen from behind: the subject's
        right eye and ear both to the right of the left ones, non-finite values).

    Raises:
        ValueError: not 6 points of 2 coordinates.
    """
    if keypoints is None:
        return None
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (6, 2):
        raise ValueError(f"expected 6 (x, y) keypoints, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        return None
    right_eye, left_eye = points[0], points[1]
    eye_mid = (right_eye + left_eye) / 2.0
    # The subject's LEFT eye is on the image's right: the eye line points along +x when upright.
    dx, dy = left_eye - right_eye
    if math.hypot(dx, dy) < _EPS:
        return None
    roll = math.atan2(dy, dx)
    cos_r, sin_r = math.cos(-roll), math.sin(-roll)
    rotation = np.array([[cos_r, -sin_r], [sin_r, cos_r]])
    upright = (points - eye_mid) @ rotation.T
    r_eye, l_eye, nose, mouth, r_ear, l_ear = upright

    ratios = []
    for right, left in ((r_eye, l_eye), (r_ear, l_ear)):
        width = left[0] - right[0]
        if width > _EPS:
            ratios.append((nose[0] - (left[0] + right[0]) / 2.0) / width)
    if not ratios:
        return None
    yaw = math.degrees(math.atan(YAW_GAIN * float(np.mean(ratios))))

    height = mouth[1]  # the eye midpoint is at y = 0 after the rotation
    if height < _EPS:
        return None
    ratio = nose[1] / height
    denominator = NOSE_DEPTH - MOUTH_DEPTH * ratio
    pitch = math.degrees(math.atan2(FRONTAL_NOSE_RATIO - ratio, denominator))
    if not -90.0 < pitch < 90.0:
        # A nose far below the mouth (denominator <= 0) is outside the model: a broken pose.
        return None
    return HeadPose(yaw_deg=yaw, pitch_deg=pitch, attentive=is_attentive(yaw, pitch))
