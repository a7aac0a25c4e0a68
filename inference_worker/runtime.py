"""Runtime models of a worker process: loaded lazily, once per process, after the fork.

``get_detector()`` and ``get_classifier()`` return process-wide singletons. MediaPipe,
TensorFlow and LiteRT are imported only inside the loaders, so importing this module (or
``inference_worker.tasks``) stays light, and a prefork Celery parent never holds models that its
children would inherit: after ``os.fork()`` the caches are emptied (``os.register_at_fork``) and
each child loads its own copy on first use, or at ``worker_process_init`` when
``ENGAGEMENT_WARM_MODELS`` is set (see :func:`warm_if_configured`).

Face detector: MediaPipe BlazeFace through the MediaPipe Tasks API
(``mediapipe.tasks.python.vision.FaceDetector``), from the model files shipped in
``inference_worker/models/`` (see ``SOURCE.md`` there; nothing is downloaded). Checked with
mediapipe 1.2.2: the Tasks ``FaceDetector`` accepts BOTH files; it reads the input size
(128x128 short range, 192x192 full range) and the anchor count (896 / 2304) from the model, and
its boxes and keypoints on the full-range model are correct (drawn and checked on the shared
photos). Full range finds 4/4 faces in ``webcam_posed_expressions_4.jpg`` and 6/6 in
``group_photo_6_people.jpg`` at whole-frame size (short range: 4/4 and 1/6), so it is the
default. Loading the sparse full-range file prints harmless "Sparsity tensors may not yet be
fully supported" warnings from LiteRT on stderr.

Note: importing ``mediapipe.tasks`` imports TensorFlow when it is installed (for
``tensorflow.tools.docs.doc_controls``, in ``mediapipe/tasks/python/core/optional_dependencies``),
so a worker that detects faces has TensorFlow in memory even with a LiteRT classifier.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inference_worker.pipeline import Detection, ExpressionModel, FaceDetector

logger = logging.getLogger(__name__)

MODELS_DIR: Path = Path(__file__).resolve().parent / "models"
"""Folder of the shipped BlazeFace files (with ``LICENSE`` and ``SOURCE.md``)."""

DETECTOR_MODELS: dict[str, Path] = {
    "full": MODELS_DIR / "face_detection_full_range_sparse.tflite",
    "short": MODELS_DIR / "face_detection_short_range.tflite",
}
"""``ENGAGEMENT_DETECTOR`` value -> BlazeFace model file. ``full``: faces up to ~5 m from the
camera (192x192 input, group photos, room cameras); ``short``: faces within ~2 m (128x128 input,
webcams, selfies)."""

DEFAULT_DETECTOR: str = "full"
MIN_DETECTION_CONFIDENCE: float = 0.5
"""Detector score threshold (MediaPipe's default). The sixth face of the group photo scores 0.52."""
MIN_SUPPRESSION_THRESHOLD: float = 0.3
"""IoU above which overlapping detections are merged (MediaPipe's default)."""

_TRUE = {"1", "true", "yes", "on"}

_lock = threading.RLock()
_detectors: dict[str, FaceDetector] = {}
_tiled: dict[str, FaceDetector] = {}
_classifiers: dict[str | None, ExpressionModel] = {}


def _reset_after_fork() -> None:
    """In a forked child: forget the parent's models (MediaPipe's threads do not survive a fork)."""
    global _lock
    _lock = threading.RLock()
    _detectors.clear()
    _tiled.clear()
    _classifiers.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _setting(name: str, default: Any) -> Any:
    """The Django setting ``name`` when defined, else the environment variable, else default."""
    try:
        from django.conf import settings

        if settings.configured and hasattr(settings, name):
            return getattr(settings, name)
    except ImportError:  # pragma: no cover - Django is a dependency
        pass
    return os.environ.get(name, default)


class MediaPipeFaceDetector:
    """BlazeFace via the MediaPipe Tasks ``FaceDetector`` (IMAGE mode), as a :class:`FaceDetector`.

    Args:
        model_path: a BlazeFace ``.tflite`` file (short range or full range sparse).
        min_confidence: score threshold, ``0..1``.
        min_suppression: non-maximum-suppression IoU threshold, ``0..1``.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        RuntimeError: MediaPipe cannot build a detector from the file.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        min_confidence: float = MIN_DETECTION_CONFIDENCE,
        min_suppression: float = MIN_SUPPRESSION_THRESHOLD,
    ):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face detector model not found: {path}")
        import mediapipe as mp
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import face_detector

        self.model_path = path
        self._mp = mp
        options = face_detector.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            min_detection_confidence=min_confidence,
            min_suppression_threshold=min_suppression,
        )
        self._detector = face_detector.FaceDetector.create_from_options(options)
        self._lock = threading.Lock()  # one graph, fed one image at a time

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB frame.

        Args:
            rgb: ``uint8`` ``(H, W, 3)`` RGB. MediaPipe letterboxes it to the model input itself.

        Returns:
            :class:`~inference_worker.pipeline.Detection` list: pixel boxes, scores ``0..1`` and
            the 6 BlazeFace keypoints in pixels.
        """
        height, width = rgb.shape[:2]
        image = self._mp.Image(
            image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)
        )
        with self._lock:
            result = self._detector.detect(image)
        detections = []
        for det in result.detections:
            bb = det.bounding_box
            score = float(det.categories[0].score) if det.categories else 0.0
            keypoints = tuple((kp.x * width, kp.y * height) for kp in det.keypoints or ()) or None
            detections.append(
                Detection(
                    box=(float(bb.origin_x), float(bb.origin_y), float(bb.width), float(bb.height)),
                    score=score,
                    keypoints=keypoints,
                )
            )
        return detections

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        detector, self._detector = getattr(self, "_detector", None), None
        if detector is not None:
            detector.close()

    def __repr__(self) -> str:
        return f"MediaPipeFaceDetector({self.model_path.name!r})"


def detector_kind(kind: str | None = None) -> str:
    """Validate a detector kind (``None``: the ``ENGAGEMENT_DETECTOR`` setting, default "full").

    Raises:
        django.core.exceptions.ImproperlyConfigured: not one of :data:`DETECTOR_MODELS`.
    """
    value = (kind or _setting("ENGAGEMENT_DETECTOR", DEFAULT_DETECTOR) or DEFAULT_DETECTOR).strip()
    if value not in DETECTOR_MODELS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"ENGAGEMENT_DETECTOR must be one of {sorted(DETECTOR_MODELS)}, got {value!r}"
        )
    return value


def get_detector(kind: str | None = None, *, source: str | None = None) -> FaceDetector:
    """The process's face detector for a source, loaded on first use.

    Args:
        kind: ``"full"`` or ``"short"``; ``None`` reads ``ENGAGEMENT_DETECTOR`` (default full).
        source: ``"webcam"`` (``None``, the default: one whole-frame pass, what live frames
            use), ``"screen"`` (a video-call gallery: + 2x2 tiles) or ``"room"`` (a classroom
            camera: + finer tiles, lower threshold, verification); see
            :data:`inference_worker.detection.SOURCE_SETTINGS`.

    Returns:
        For ``webcam``: a :class:`MediaPipeFaceDetector`. Otherwise a
        :class:`~inference_worker.detection.TiledFaceDetector` around one (built with the
        source's ``detector_min_confidence``). The same object for every call with the same
        kind and source in this process.

    Raises:
        django.core.exceptions.ImproperlyConfigured: unknown kind.
        ValueError: unknown source.
        FileNotFoundError: the shipped model file is missing.
    """
    from inference_worker.detection import DEFAULT_SOURCE, TiledFaceDetector, source_settings

    kind = detector_kind(kind)
    settings = source_settings(source)
    name = (source or DEFAULT_SOURCE).strip().lower()
    confidence = settings.detector_min_confidence
    with _lock:
        base_key = kind if confidence is None else f"{kind}@{confidence:g}"
        detector = _detectors.get(base_key)
        if detector is None:
            options = {} if confidence is None else {"min_confidence": confidence}
            detector = MediaPipeFaceDetector(DETECTOR_MODELS[kind], **options)
            _detectors[base_key] = detector
            logger.info("loaded face detector %s (pid %d)", detector, os.getpid())
        if not settings.grids and settings.whole_frame and confidence is None:
            return detector  # webcam: the plain detector, one pass
        key = f"{kind}/{name}"
        tiled = _tiled.get(key)
        if tiled is None:
            tiled = TiledFaceDetector(detector, settings)
            _tiled[key] = tiled
        return tiled


def classifier_path(path: str | os.PathLike | None = None) -> str | None:
    """The classifier file to load: ``path``, else ``ENGAGEMENT_CLASSIFIER_PATH``; ``None`` = shipped."""
    value = path if path is not None else _setting("ENGAGEMENT_CLASSIFIER_PATH", "")
    return str(value) if value else None


def get_classifier(path: str | os.PathLike | None = None) -> ExpressionModel:
    """The process's expression classifier, loaded on first use.

    Args:
        path: a ``.tflite``/``.keras`` model; ``None`` reads ``ENGAGEMENT_CLASSIFIER_PATH``,
            where empty means the shipped model (``ml/shipped/``).

    Returns:
        An :class:`ml.inference.ExpressionClassifier`, the same object for every call with the
        same path in this process.

    Raises:
        FileNotFoundError: the model file does not exist.
        ValueError: the file is not a usable classifier (see ``ExpressionClassifier.load``).
    """
    key = classifier_path(path)
    with _lock:
        classifier = _classifiers.get(key)
        if classifier is None:
            from ml.inference import ExpressionClassifier

            classifier = ExpressionClassifier.load(key)
            _classifiers[key] = classifier
            logger.info("loaded expression classifier %r (pid %d)", classifier, os.getpid())
        return classifier


def warm(*, create_detector: bool = True) -> None:
    """Load the configured models now, so that the first live frame does not pay for it.

    Args:
        create_detector: also build the MediaPipe detector and run it once on a blank frame.
            With ``False`` only MediaPipe's modules are imported (the slow part: ~2 s, they
            import TensorFlow) and the detector itself is built on first use (~50 ms).

    Raises:
        FileNotFoundError, ValueError, ImproperlyConfigured: as the loaders.
    """
    blank = np.zeros((240, 320, 3), np.uint8)
    if create_detector:
        get_detector().detect(blank)
    else:
        detector_kind()  # fail early on a bad setting
        import mediapipe  # noqa: F401
        from mediapipe.tasks.python.vision import face_detector  # noqa: F401
    get_classifier().predict_proba([blank[:48, :48]])


def warm_if_configured(**_: Any) -> bool:
    """``worker_process_init`` receiver: warm the models when ``ENGAGEMENT_WARM_MODELS`` is true.

    The MediaPipe detector is NOT built here, only imported (``warm(create_detector=False)``):
    building it sets SIGPROF to "ignore" (LiteRT/MediaPipe internals), and a prefork child runs
    ``worker_process_init`` BEFORE billiard resets every signal to its default
    (``billiard.common.reset_signals(full=True)``), after which the next SIGPROF kills the
    child (exit code 27, a crash loop; reproduced with Celery 5.7 / billiard / mediapipe 1.2.2).
    Built lazily inside the first task it works.

    Failures are logged, not raised: the worker process keeps running and the task reports the
    same error on the first frame.

    Returns:
        Whether the models were warmed.
    """
    value = _setting("ENGAGEMENT_WARM_MODELS", False)
    if not (value is True or str(value).strip().lower() in _TRUE):
        return False
    try:
        warm(create_detector=False)
    except Exception:  # noqa: BLE001 - never kill a worker process at start-up over this
        logger.exception("could not warm the models in worker process %d", os.getpid())
        return False
    logger.info("models warmed in worker process %d", os.getpid())
    return True


def clear() -> None:
    """Close and forget the loaded models (tests, reloads). Safe to call at any time."""
    with _lock:
        for detector in _detectors.values():
            close = getattr(detector, "close", None)
            if close is not None:
                close()
        _detectors.clear()
        _tiled.clear()
        _classifiers.clear()


# Close MediaPipe graphs before interpreter teardown: MediaPipe's __del__ fails noisily when it
# runs after its C bindings are gone.
atexit.register(clear)
