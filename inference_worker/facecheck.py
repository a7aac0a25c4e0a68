"""Second-stage face check: is what the detector boxed really a face?

BlazeFace, run on tiles and at low thresholds to find small faces, also boxes hands, collars,
chair backs and dark patches. Every detection is therefore looked at a second time by a different
model: MediaPipe's face landmark model (``face_landmark.tflite``, the Face Mesh model, shipped in
``inference_worker/models/``, see ``SOURCE.md`` there). Besides its 468 landmarks it outputs a
face-presence logit; MediaPipe's Face Mesh drops a face whose presence (the sigmoid of that logit)
is under 0.5 (``face_landmark_cpu.pbtxt``: ``TensorsToFloatsCalculator`` with sigmoid, then
``ThresholdingCalculator`` at 0.5).

The model's input is cut as MediaPipe cuts it from a BlazeFace detection
(``face_detection_front_detection_to_roi.pbtxt``): a square of 1.5 times the box's longer side
centred on the box, rotated so the eye line (keypoints 0 and 1) is level, resampled to 192x192
RGB, ``float32`` in ``[0, 1]``. :func:`ml.preprocessing.aligned_crop` cuts it (the project's one
framing function, with ``margin=0.5`` and ``out_size=192``). The model runs with LiteRT (about
2-3 ms per face on one core), so the check loads neither TensorFlow nor MediaPipe.

The presence score alone is not the decision: it rejects nearly every hand and collar, but also
real faces under about 24 px and blurred ones, and it accepts printed faces. How the score, the
detector's own score and the face size are combined is :class:`FaceCheckRule`, chosen by
measurement on ``tests/fixtures/face_boxes.json`` (see :data:`DEFAULT_RULE`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference_worker.pipeline import Detection, FaceDetector
from ml.preprocessing import aligned_crop, eye_roll_deg

__all__ = [
    "CHECK_INPUT_SIDE",
    "CHECK_MARGIN",
    "DEFAULT_RULE",
    "LANDMARK_MODEL",
    "CheckedFaceDetector",
    "FaceCheckRule",
    "FaceLandmarkCheck",
    "check_input",
]

LANDMARK_MODEL: Path = Path(__file__).resolve().parent / "models" / "face_landmark.tflite"
"""MediaPipe's face landmark model (Face Mesh, 192x192 input), Apache-2.0 (see ``SOURCE.md``)."""

CHECK_INPUT_SIDE: int = 192
"""Side of the face landmark model's square input, pixels."""

CHECK_MARGIN: float = 0.5
"""The input square is ``1 + 0.5 = 1.5`` times the box's longer side (MediaPipe's
``RectTransformationCalculator`` ``scale_x: 1.5 scale_y: 1.5 square_long: true`` for the
landmark ROI from a detection)."""


STRETCH_PERCENTILES: tuple[float, float] = (1.0, 99.0)
"""The input's intensities are stretched linearly so that these percentiles become 0 and 255.

Why: the presence score collapses in dim light and on soft, low-contrast faces that BlazeFace
still finds. On the faces of 32 px or more of the shared GIFs and photos, degraded as a
classroom camera degrades them (``python -m inference_worker.facecheck_curves``, table 2), the
share keeping a presence of at least 0.05 rises from 89% to 98% at half the light, from 72% to
88% under a 2.5 px Gaussian blur and from 61% to 83% at JPEG quality 15, while the share of
BlazeFace's weak detections off the faces reaching it stays at 3% (table 3). A gamma correction
or CLAHE did less for the faces in a one-off comparison."""


def stretch_contrast(face: np.ndarray) -> np.ndarray:
    """Linear contrast stretch of a ``uint8`` image (:data:`STRETCH_PERCENTILES`, measured on
    every 4th pixel of each row and column); an image with under 1 level of spread is returned
    unchanged. Applied as a 256-entry lookup table (``cv2.LUT``): the same bytes as stretching
    every pixel in ``float32``, at about a twentieth of the cost (0.03 instead of 0.58 ms for a
    192x192 crop, one-off timing on a 2-core Intel Xeon with AVX-512)."""
    lo, hi = np.percentile(face[::4, ::4], STRETCH_PERCENTILES)
    if hi - lo < 1.0:
        return face
    levels = (np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    return cv2.LUT(face, np.clip(levels, 0.0, 255.0).astype(np.uint8))


def check_input(rgb: np.ndarray, detection: Detection, *, stretch: bool = True) -> np.ndarray:
    """The face landmark model's view of one detection, contrast-stretched.

    Args:
        rgb: ``uint8`` ``(H, W, 3)`` RGB frame.
        detection: a box in pixels, with BlazeFace's keypoints when known (the eye line sets
            the rotation; without keypoints the square is upright).
        stretch: apply :func:`stretch_contrast` (``False`` only to measure what it does).

    Returns:
        ``uint8`` ``(192, 192, 3)`` RGB.

    Raises:
        ValueError: a box with ``w`` or ``h <= 0`` or with no pixel inside the frame.
    """
    roll = 0.0
    if detection.keypoints is not None and len(detection.keypoints) >= 2:
        roll = eye_roll_deg(detection.keypoints[0], detection.keypoints[1])
    crop = aligned_crop(rgb, detection.box, CHECK_MARGIN, roll_deg=roll, out_size=CHECK_INPUT_SIDE)
    return stretch_contrast(crop) if stretch else crop


class FaceLandmarkCheck:
    """Face-presence scores from MediaPipe's face landmark model, run with LiteRT.

    Args:
        model_path: the ``face_landmark.tflite`` file (default: the shipped one).
        num_threads: LiteRT threads, ``>= 1``. One: a worker already runs one process per
            core, and a 192x192 input gains little from a second thread.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: the model's input or outputs are not those of the face landmark model.
    """

    def __init__(self, model_path: str | os.PathLike = LANDMARK_MODEL, *, num_threads: int = 1):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face landmark model not found: {path}")
        from ai_edge_litert.interpreter import Interpreter

        self.model_path = path
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        if tuple(inp["shape"]) != (1, CHECK_INPUT_SIDE, CHECK_INPUT_SIDE, 3):
            raise ValueError(f"{path.name}: expected a 1x192x192x3 input, got {inp['shape']}")
        self._input = inp["index"]
        presence = [
            d for d in self._interpreter.get_output_details() if int(np.prod(d["shape"])) == 1
        ]
        if len(presence) != 1:
            raise ValueError(f"{path.name}: expected one scalar face-presence output")
        self._presence = presence[0]["index"]
        self._lock = threading.Lock()

    def presence(self, face: np.ndarray) -> float:
        """Face presence of one model input.

        Args:
            face: ``uint8`` ``(192, 192, 3)`` RGB (:func:`check_input`).

        Returns:
            ``sigmoid(logit)`` in ``[0, 1]``: about 1 for a face, about 0 for anything else.

        Raises:
            ValueError: another shape or dtype.
        """
        if face.shape != (CHECK_INPUT_SIDE, CHECK_INPUT_SIDE, 3) or face.dtype != np.uint8:
            raise ValueError(f"expected uint8 (192, 192, 3), got {face.dtype} {face.shape}")
        tensor = (face.astype(np.float32) / 255.0)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            logit = float(self._interpreter.get_tensor(self._presence).reshape(()))
        return 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0)))

    def scores(self, rgb: np.ndarray, detections: Sequence[Detection]) -> list[float]:
        """Face presence of every detection of a frame (0.0 for a box outside the frame).

        Args:
            rgb: ``uint8`` ``(H, W, 3)`` RGB frame.
            detections: boxes in pixels of ``rgb``.

        Returns:
            One score in ``[0, 1]`` per detection, in order.
        """
        out = []
        for detection in detections:
            try:
                out.append(self.presence(check_input(rgb, detection)))
            except ValueError:
                out.append(0.0)
        return out

    def __repr__(self) -> str:
        return f"FaceLandmarkCheck({self.model_path.name!r})"


@dataclass(frozen=True, slots=True)
class FaceCheckRule:
    """When a detection counts as a face, given its face-presence score.

    * A box whose longer side is under ``min_side`` px is dropped: nothing can be read from it,
      and no cue tells a face from a hand at that size.
    * A box of at least ``judged_from_side`` px is kept when its presence is at least
      ``min_presence``.
    * A box in between is kept: its presence is measured and reported, but not trusted.

    Attributes:
        min_side: smallest box side kept, pixels, ``>= 0``.
        judged_from_side: smallest box side whose presence decides, pixels.
        min_presence: presence threshold, ``0..1``.
    """

    min_side: float = 10.0
    judged_from_side: float = 32.0
    min_presence: float = 0.05

    def keeps(self, detection: Detection, presence: float | None) -> bool:
        """Whether ``detection`` (pixel box) with this presence (``None``: not measured) is a
        face."""
        side = max(detection.box[2], detection.box[3])
        if side < self.min_side:
            return False
        if side < self.judged_from_side:
            return True
        return presence is not None and presence >= self.min_presence


DEFAULT_RULE: FaceCheckRule = FaceCheckRule()
"""The rule measured on ``tests/fixtures/face_boxes.json`` (76 frames of the shared media) and
on degraded copies of its faces (``python -m inference_worker.facecheck_curves`` prints the
tables; ``python -m inference_worker.recall`` the precision and recall per mode):

* ``min_side=10``: every box under 10 px that the three modes drew on these frames is not a
  face (a one-off count of their unchecked output: 16, clasped hands and an ear); the smallest
  face found is 10 px (a pupil of the CCTV clip), and the face-quality gate reads no face under
  12 px anyway.
* ``judged_from_side=32``: under 32 px the landmark model misses too many real faces (58% of
  the 10-16 px faces and 43% of the 24-32 px ones reach a presence of 0.05, table 1), so
  trusting it there would lose faces that the detector found; such boxes are kept.
* ``min_presence=0.05``: 3% of BlazeFace's weak detections off the faces reach it (table 3),
  against 100% of the clean faces of 32 px or more, 98% at half the light, 88% under a blur and
  83% at JPEG quality 15 (57% at a quarter of the light with sensor noise, where the
  face-quality gate would not read them anyway; table 2). MediaPipe's own 0.5 keeps 91%, 76% and
  61% of those degraded faces and rejects no more non-faces.
"""


@dataclass
class CheckedFaceDetector:
    """A face detector whose detections pass the second-stage check.

    Args:
        detector: any :class:`~inference_worker.pipeline.FaceDetector` (plain or tiled).
        check: the presence model.
        rule: the decision.

    Each kept :class:`~inference_worker.pipeline.Detection` carries its ``presence`` score, so a
    false box can be explained afterwards; boxes too small to keep are dropped before the model
    runs, and boxes kept unjudged (10-32 px) still get their score measured and reported.
    """

    detector: FaceDetector
    check: FaceLandmarkCheck
    rule: FaceCheckRule = DEFAULT_RULE

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect, score every detection's face presence, and keep those the rule accepts.

        Args:
            rgb: ``uint8`` ``(H, W, 3)`` RGB frame.

        Returns:
            The kept detections with ``presence`` set, in the wrapped detector's order.
        """
        found = [
            d for d in self.detector.detect(rgb) if max(d.box[2], d.box[3]) >= self.rule.min_side
        ]
        scores = self.check.scores(rgb, found)
        return [
            Detection(box=d.box, score=d.score, keypoints=d.keypoints, presence=p)
            for d, p in zip(found, scores, strict=True)
            if self.rule.keeps(d, p)
        ]
