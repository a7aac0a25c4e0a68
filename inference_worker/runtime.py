"""Runtime models of a worker process: loaded lazily, once per process, after the fork.

``get_detector(source)`` and ``get_classifier()`` return process-wide singletons. MediaPipe,
TensorFlow and LiteRT are imported only inside the loaders, so importing this module (or
``inference_worker.tasks``) stays light, and a prefork Celery parent never holds models that its
children would inherit: after ``os.fork()`` the caches are emptied (``os.register_at_fork``) and
each child loads its own copy on first use, or at ``worker_process_init`` when
``ENGAGEMENT_WARM_MODELS`` is set (see :func:`warm_if_configured`).

The detector itself is in :mod:`inference_worker.blazeface` (per source wrapped in the tiling
of :mod:`inference_worker.detection`), cross-frame batching in :mod:`inference_worker.batching`.
Settings are Django settings (``ENGAGEMENT_*``, ``engagement/settings/base.py``), read through
:func:`inference_worker.config.setting` only.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inference_worker.batching import BatchingClassifier
from inference_worker.blazeface import (
    DEFAULT_DETECTOR,
    DETECTOR_MODELS,
    LiteRTFaceDetector,
    MediaPipeFaceDetector,
    import_mediapipe,
)
from inference_worker.config import setting
from inference_worker.pipeline import ExpressionModel, FaceDetector

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}

CLASSIFIER_BACKENDS: dict[str, tuple[str, ...]] = {
    "litert": (".tflite",),
    "keras": (".keras", ".h5", ".hdf5"),
}
"""``ENGAGEMENT_CLASSIFIER_BACKEND`` value -> model file suffixes it runs."""

DEFAULT_CLASSIFIER_BACKEND: str = "litert"

DETECTOR_BACKENDS: dict[str, type] = {
    "litert": LiteRTFaceDetector,
    "mediapipe": MediaPipeFaceDetector,
}
"""``ENGAGEMENT_DETECTOR_BACKEND`` value -> the class that runs BlazeFace: ``litert`` (the
default: LiteRT directly, an input fitted to the image's aspect, about half the cost per call)
or ``mediapipe`` (the MediaPipe Tasks ``FaceDetector``, the reference it is tested against)."""

DEFAULT_DETECTOR_BACKEND: str = "litert"

_lock = threading.RLock()
_detectors: dict[str, FaceDetector] = {}
_tiled: dict[str, FaceDetector] = {}
_checked: dict[str, FaceDetector] = {}
_face_check: Any = None  # the process's FaceLandmarkCheck, once loaded
_classifiers: dict[tuple[str | None, str, int, float], ExpressionModel] = {}


def _reset_after_fork() -> None:
    """In a forked child: forget the parent's models (MediaPipe's threads do not survive a fork)."""
    global _lock, _face_check
    _lock = threading.RLock()
    _detectors.clear()
    _tiled.clear()
    _checked.clear()
    _classifiers.clear()
    _face_check = None


os.register_at_fork(after_in_child=_reset_after_fork)


def detector_kind(kind: str | None = None) -> str:
    """Validate a detector kind (``None``: the ``ENGAGEMENT_DETECTOR`` setting, default "full").

    Raises:
        django.core.exceptions.ImproperlyConfigured: not one of :data:`DETECTOR_MODELS`.
    """
    value = str(kind or setting("ENGAGEMENT_DETECTOR") or DEFAULT_DETECTOR).strip()
    if value not in DETECTOR_MODELS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"ENGAGEMENT_DETECTOR must be one of {sorted(DETECTOR_MODELS)}, got {value!r}"
        )
    return value


def detector_backend(backend: str | None = None) -> str:
    """Validate a detector back end (``None``: the ``ENGAGEMENT_DETECTOR_BACKEND`` setting,
    default "litert").

    Raises:
        django.core.exceptions.ImproperlyConfigured: not one of :data:`DETECTOR_BACKENDS`.
    """
    value = str(backend or setting("ENGAGEMENT_DETECTOR_BACKEND") or DEFAULT_DETECTOR_BACKEND)
    value = value.strip().lower()
    if value not in DETECTOR_BACKENDS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"ENGAGEMENT_DETECTOR_BACKEND must be one of {sorted(DETECTOR_BACKENDS)}, got {value!r}"
        )
    return value


def detector_threads() -> int:
    """LiteRT threads per BlazeFace call (``ENGAGEMENT_DETECTOR_THREADS``, default 1: a worker
    runs one process per core; 2 makes one ``room`` frame about a third faster on 2 cores).

    Raises:
        django.core.exceptions.ImproperlyConfigured: not a whole number >= 1.
    """
    value = setting("ENGAGEMENT_DETECTOR_THREADS")
    try:
        threads = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError):
        threads = 0
    if threads < 1:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"ENGAGEMENT_DETECTOR_THREADS must be a whole number >= 1, got {value!r}"
        )
    return threads


def _setting_on(name: str) -> bool:
    """A boolean setting, also when given as text ("1", "true", "yes", "on")."""
    value = setting(name)
    return value is True or str(value).strip().lower() in _TRUE


def emotion_inference_enabled() -> bool:
    """The site-wide off-switch ``ENGAGEMENT_EMOTION_INFERENCE`` (default true). Off, no frame
    is classified and no worker loads the expression classifier."""
    return _setting_on("ENGAGEMENT_EMOTION_INFERENCE")


def face_check_enabled(check: bool | None = None) -> bool:
    """Whether detections go through the second-stage face check (``None``: the
    ``ENGAGEMENT_FACE_CHECK`` setting, default true)."""
    return bool(check) if check is not None else _setting_on("ENGAGEMENT_FACE_CHECK")


def get_face_check() -> Any:
    """The process's :class:`~inference_worker.facecheck.FaceLandmarkCheck` (LiteRT), loaded on
    first use.

    Raises:
        FileNotFoundError: the shipped ``face_landmark.tflite`` is missing.
    """
    global _face_check
    with _lock:
        if _face_check is None:
            from inference_worker.facecheck import FaceLandmarkCheck

            _face_check = FaceLandmarkCheck()
            logger.info("loaded face check %r (pid %d)", _face_check, os.getpid())
        return _face_check


def get_detector(
    source: str | None = None, *, kind: str | None = None, check: bool | None = None
) -> FaceDetector:
    """The process's face detector for a source (detection mode), loaded on first use.

    Args:
        source: ``None`` = ``"webcam"``:

            * ``"webcam"``: one whole-frame pass, what live webcam frames use (~5 ms at 640x480);
            * ``"screen"``: a shared screen / video-call gallery: + 2x2 tiles;
            * ``"room"``: a classroom camera, the most thorough: + 4x4 and 5x5 tiles, a lower
              threshold and a second look at unsure faces (~100-150 ms per 640x360 frame
              with the ``litert`` back end on one thread; ``python -m inference_worker.bench
              --source room``).

            See :data:`inference_worker.detection.SOURCE_SETTINGS`.
        kind: BlazeFace model, ``"full"`` or ``"short"``; ``None`` reads ``ENGAGEMENT_DETECTOR``
            (default ``"full"``).
        check: run the second-stage face check (:mod:`inference_worker.facecheck`) on every
            detection; ``None`` reads ``ENGAGEMENT_FACE_CHECK`` (default true).

    Returns:
        For ``webcam``: the plain detector of the back end (``ENGAGEMENT_DETECTOR_BACKEND``:
        :class:`~inference_worker.blazeface.LiteRTFaceDetector` by default,
        :class:`~inference_worker.blazeface.MediaPipeFaceDetector` with ``mediapipe``). Otherwise
        a :class:`~inference_worker.detection.TiledFaceDetector` around one (built with the
        source's ``detector_min_confidence`` and ``fit_aspect``). With the check, that detector
        wrapped in a :class:`~inference_worker.facecheck.CheckedFaceDetector`, whose detections carry their
        ``presence``. The same object for every call with the same back end, kind, source and
        check in this process; all keep BlazeFace's 6 keypoints in frame pixels.

    Raises:
        ValueError: unknown source (the message names the valid ones).
        django.core.exceptions.ImproperlyConfigured: unknown kind or back end, bad thread count.
        FileNotFoundError: the shipped model file is missing.
    """
    from inference_worker.detection import DEFAULT_SOURCE, TiledFaceDetector, source_settings

    kind = detector_kind(kind)
    backend = detector_backend()
    settings = source_settings(source)
    name = (source or DEFAULT_SOURCE).strip().lower()
    confidence = settings.detector_min_confidence
    with _lock:
        options: dict[str, Any] = {} if confidence is None else {"min_confidence": confidence}
        if backend == "litert":
            options["fit_aspect"] = settings.fit_aspect
            options["num_threads"] = detector_threads()
        base_key = f"{backend}:{kind}:" + ",".join(f"{k}={v}" for k, v in sorted(options.items()))
        detector = _detectors.get(base_key)
        if detector is None:
            detector = DETECTOR_BACKENDS[backend](DETECTOR_MODELS[kind], **options)
            _detectors[base_key] = detector
            logger.info("loaded face detector %s (pid %d)", detector, os.getpid())
        key = f"{base_key}/{name}"  # a wrapper is cached with the detector it wraps
        if settings.grids or not settings.whole_frame or confidence is not None:
            tiled = _tiled.get(key)
            if tiled is None:
                tiled = TiledFaceDetector(detector, settings)
                _tiled[key] = tiled
            detector = tiled
        # else webcam: the plain detector, one pass
        if not face_check_enabled(check):
            return detector
        checked = _checked.get(key)
        if checked is None:
            from inference_worker.facecheck import CheckedFaceDetector

            checked = CheckedFaceDetector(detector, get_face_check())
            _checked[key] = checked
        return checked


def classifier_backend(backend: str | None = None) -> str:
    """Validate a classifier back end (``None``: ``ENGAGEMENT_CLASSIFIER_BACKEND``, default litert).

    Raises:
        django.core.exceptions.ImproperlyConfigured: not one of :data:`CLASSIFIER_BACKENDS`.
    """
    value = backend or setting("ENGAGEMENT_CLASSIFIER_BACKEND")
    value = str(value or DEFAULT_CLASSIFIER_BACKEND).strip().lower()
    if value not in CLASSIFIER_BACKENDS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"ENGAGEMENT_CLASSIFIER_BACKEND must be one of {sorted(CLASSIFIER_BACKENDS)}, "
            f"got {value!r}"
        )
    return value


def classifier_path(
    path: str | os.PathLike | None = None, *, backend: str | None = None
) -> str | None:
    """The classifier file to load for a back end.

    Args:
        path: a model file (or a folder holding ``expression_cnn.<suffix>``); ``None`` reads
            ``ENGAGEMENT_CLASSIFIER_PATH``, where empty means the shipped model.
        backend: ``"litert"``/``"keras"``; ``None`` reads ``ENGAGEMENT_CLASSIFIER_BACKEND``.

    Returns:
        The path as a string; ``None`` for the shipped LiteRT model (``ml/shipped/``); the
        shipped ``.keras`` file for the keras back end without a path.

    Raises:
        django.core.exceptions.ImproperlyConfigured: unknown back end, or a file whose suffix
            the back end cannot run (e.g. a ``.tflite`` file with ``keras``).
    """
    backend = classifier_backend(backend)
    value = path if path is not None else setting("ENGAGEMENT_CLASSIFIER_PATH")
    suffixes = CLASSIFIER_BACKENDS[backend]
    if not value:
        if backend == DEFAULT_CLASSIFIER_BACKEND:
            return None
        from ml.inference import SHIPPED_MODEL

        return str(SHIPPED_MODEL.with_suffix(suffixes[0]))
    candidate = Path(value)
    if candidate.is_dir():
        from ml.inference import SHIPPED_MODEL

        candidate = candidate / SHIPPED_MODEL.with_suffix(suffixes[0]).name
    if candidate.suffix.lower() not in suffixes:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"classifier back end {backend!r} runs {'/'.join(suffixes)} files, got {candidate}; "
            "set ENGAGEMENT_CLASSIFIER_PATH and ENGAGEMENT_CLASSIFIER_BACKEND together"
        )
    return str(candidate)


def batch_settings() -> tuple[int, float]:
    """``(max_size, max_wait_ms)`` of cross-frame batching from the settings; max_size <= 1 = off.

    Raises:
        django.core.exceptions.ImproperlyConfigured: a negative or non-numeric value.
    """
    try:
        size = int(setting("ENGAGEMENT_BATCH_MAX_SIZE") or 0)
        wait = float(setting("ENGAGEMENT_BATCH_MAX_WAIT_MS"))
    except (TypeError, ValueError) as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"ENGAGEMENT_BATCH_MAX_* must be numbers: {exc}") from exc
    if size < 0 or wait < 0:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"ENGAGEMENT_BATCH_MAX_SIZE and _WAIT_MS must be >= 0, got {size} and {wait}"
        )
    return size, wait


def get_classifier(
    path: str | os.PathLike | None = None, *, backend: str | None = None
) -> ExpressionModel:
    """The process's expression classifier, loaded on first use.

    Args:
        path: a ``.tflite``/``.keras`` model; ``None`` reads ``ENGAGEMENT_CLASSIFIER_PATH``,
            where empty means the shipped model (``ml/shipped/``) of the back end.
        backend: ``"litert"`` or ``"keras"``; ``None`` reads ``ENGAGEMENT_CLASSIFIER_BACKEND``.

    Returns:
        An :class:`ml.inference.ExpressionClassifier`, wrapped in a :class:`BatchingClassifier`
        when ``ENGAGEMENT_BATCH_MAX_SIZE`` > 1; the same object for every call with the same
        path, back end and batching in this process.

    Raises:
        FileNotFoundError: the model file does not exist.
        ValueError: the file is not a usable classifier (see ``ExpressionClassifier.load``).
        django.core.exceptions.ImproperlyConfigured: bad back end or batching settings.
    """
    backend = classifier_backend(backend)
    model_path = classifier_path(path, backend=backend)
    max_size, max_wait_ms = batch_settings()
    batching = max_size > 1
    key = (model_path, backend, max_size if batching else 0, max_wait_ms if batching else 0.0)
    with _lock:
        classifier = _classifiers.get(key)
        if classifier is None:
            from ml.inference import ExpressionClassifier

            classifier = ExpressionClassifier.load(model_path)
            logger.info("loaded expression classifier %r (pid %d)", classifier, os.getpid())
            if batching:
                classifier = BatchingClassifier(
                    classifier, max_batch_size=max_size, max_wait_ms=max_wait_ms
                )
            _classifiers[key] = classifier
        return classifier


def warm(*, create_detector: bool = True) -> None:
    """Load the configured models now, so that the first live frame does not pay for it.

    Args:
        create_detector: also build a MediaPipe Tasks detector (back end ``mediapipe``) and run
            it once on a blank frame. With ``False`` only MediaPipe's modules are imported
            (~0.6 s, without TensorFlow) and that detector is built on first use (~50 ms). The
            ``litert`` back end's detector (LiteRT interpreters, like the face check's) is
            always built and run here.

    Raises:
        FileNotFoundError, ValueError, ImproperlyConfigured: as the loaders.
    """
    blank = np.zeros((240, 320, 3), np.uint8)
    if create_detector or detector_backend() == "litert":
        get_detector().detect(blank)
    else:
        detector_kind()  # fail early on a bad setting
        import_mediapipe()
    if face_check_enabled():
        get_face_check()
    if emotion_inference_enabled():  # off: the classifier is never loaded
        get_classifier().predict_proba([blank[:48, :48]])


def warm_if_configured(**_: Any) -> bool:
    """``worker_process_init`` receiver: warm the models when ``ENGAGEMENT_WARM_MODELS`` is true.

    A MediaPipe Tasks detector is NOT built here, only imported (``warm(create_detector=False)``;
    the default ``litert`` back end's detector is built, as the face check is):
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
    if not _setting_on("ENGAGEMENT_WARM_MODELS"):
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
    global _face_check
    with _lock:
        for detector in _detectors.values():
            close = getattr(detector, "close", None)
            if close is not None:
                close()
        _detectors.clear()
        _tiled.clear()
        _checked.clear()
        _face_check = None
        for classifier in _classifiers.values():
            close = getattr(classifier, "close", None)
            if close is not None:
                close()
        _classifiers.clear()


# Close MediaPipe graphs before interpreter teardown: MediaPipe's __del__ fails noisily when it
# runs after its C bindings are gone.
atexit.register(clear)
