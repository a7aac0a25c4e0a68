"""Runtime models of a worker process: loaded lazily, once per process, after the fork.

``get_detector(source)`` and ``get_classifier()`` return process-wide singletons. MediaPipe,
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
fully supported" warnings from LiteRT on stderr. Per source (``webcam``, ``screen``, ``room``)
the detector is wrapped in the tiling of :data:`inference_worker.detection.SOURCE_SETTINGS`.

**No TensorFlow on the CPU path.** In mediapipe 1.2.2 every Tasks module (``face_detector``,
``vision.core.image``, the result containers, ...) does ``from
mediapipe.tasks.python.core.optional_dependencies import doc_controls``, and that module runs
``from tensorflow.tools.docs import doc_controls`` inside ``try/except ModuleNotFoundError``:
the import exists only for MediaPipe's API-docs generator (``doc_controls.do_not_generate_docs``
is a decorator that marks symbols hidden from the docs) and falls back to a no-op decorator
when TensorFlow is not installed. With tensorflow-cpu installed (our ``.keras`` back end and
``ml`` training need it) it loads all of TensorFlow for a docs decorator (measured here:
importing the face detector takes 2.1 s and ``ru_maxrss`` 550 MB with it, 0.9 s and 108 MB
without). :func:`_import_mediapipe` therefore registers, before MediaPipe is first imported, a
module of that name that holds exactly MediaPipe's own fallback (a no-op
``do_not_generate_docs``), i.e. what MediaPipe does on a machine without TensorFlow; nothing
else in the face detector's import graph touches TensorFlow (``mediapipe.tasks.python.metadata``
does, but the detector does not import it). Running the BlazeFace ``.tflite`` files through
LiteRT with our own anchor decoding would also avoid TensorFlow, but it would replace
MediaPipe's tested pre-processing, decoding and weighted NMS, on which the recall figures of
issue 4 were measured; the one-module shim keeps the detector bit-for-bit the same. With the
default LiteRT classifier a CPU worker thus never loads TensorFlow (a test checks
``sys.modules`` after detecting and classifying a real frame).

Classifier back end (``ENGAGEMENT_CLASSIFIER_BACKEND``): ``litert`` (default) runs the shipped
``.tflite`` with LiteRT on the CPU; ``keras`` runs the ``.keras`` model with TensorFlow through
one traced ``tf.function`` (:class:`ml.inference.ExpressionClassifier`; never ``model.predict``
per frame), for GPU workers. Batching ACROSS frames (:class:`BatchingClassifier`) is for workers
that analyse several frames at once, i.e. a thread pool; a GPU worker is started as::

    ENGAGEMENT_CLASSIFIER_BACKEND=keras ENGAGEMENT_BATCH_MAX_SIZE=64 \
    ENGAGEMENT_BATCH_MAX_WAIT_MS=5 celery -A inference_worker worker -Q inference \
        --pool threads -c 16

(16 threads decode and detect in parallel; their faces meet in one classifier call of up to 64
faces, issued at the latest 5 ms after the first waiting face). Batching is off by default: in a
prefork or solo worker only one frame is analysed at a time, so every frame would wait
``ENGAGEMENT_BATCH_MAX_WAIT_MS`` for nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
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

CLASSIFIER_BACKENDS: dict[str, tuple[str, ...]] = {
    "litert": (".tflite",),
    "keras": (".keras", ".h5", ".hdf5"),
}
"""``ENGAGEMENT_CLASSIFIER_BACKEND`` value -> model file suffixes it runs."""

DEFAULT_CLASSIFIER_BACKEND: str = "litert"

DEFAULT_BATCH_MAX_WAIT_MS: float = 5.0
"""Default longest wait for a cross-frame batch to fill, ms (a tenth of a 50 ms frame budget)."""

_lock = threading.RLock()
_detectors: dict[str, FaceDetector] = {}
_tiled: dict[str, FaceDetector] = {}
_classifiers: dict[tuple[str | None, str, int, float], ExpressionModel] = {}


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


_MP_OPTIONAL_DEPENDENCIES = "mediapipe.tasks.python.core.optional_dependencies"


def _import_mediapipe() -> tuple[Any, Any, Any]:
    """Import MediaPipe's Tasks face detector WITHOUT importing TensorFlow (see module docstring).

    Registers MediaPipe's own no-TensorFlow fallback for ``optional_dependencies`` (a
    ``doc_controls`` whose ``do_not_generate_docs`` returns its argument) unless that module is
    already imported, then imports MediaPipe.

    Returns:
        ``(mediapipe, BaseOptions, face_detector)`` modules/classes.
    """
    if _MP_OPTIONAL_DEPENDENCIES not in sys.modules:
        shim = types.ModuleType(
            _MP_OPTIONAL_DEPENDENCIES,
            "MediaPipe Tasks' optional dependencies, as MediaPipe defines them when TensorFlow "
            "is not installed (registered by inference_worker.runtime).",
        )
        shim.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)
        sys.modules.setdefault(_MP_OPTIONAL_DEPENDENCIES, shim)
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import face_detector

    return mp, BaseOptions, face_detector


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
        mp, BaseOptions, face_detector = _import_mediapipe()  # noqa: N806 - a class

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
            the 6 BlazeFace keypoints in pixels of ``rgb`` (MediaPipe gives them normalised to
            the image; they are scaled back here).
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


def get_detector(
    mode: str | None = None,
    /,
    *,
    source: str | None = None,
    kind: str | None = None,
) -> FaceDetector:
    """The process's face detector for a source (detection mode), loaded on first use.

    Args:
        mode: the source, positionally: ``get_detector("screen")``. For callers written before
            sources existed, a detector kind (``"full"``/``"short"``) here is read as ``kind``.
        source: the source by keyword (same values); ``None`` = ``"webcam"``:

            * ``"webcam"``: one whole-frame pass, what live webcam frames use (~5 ms at 640x480);
            * ``"screen"``: a shared screen / video-call gallery: + 2x2 tiles;
            * ``"room"``: a classroom camera, the most thorough: + 4x4 and 5x5 tiles, a lower
              threshold and a second look at unsure faces (~150-250 ms per frame).

            See :data:`inference_worker.detection.SOURCE_SETTINGS`.
        kind: BlazeFace model, ``"full"`` or ``"short"``; ``None`` reads ``ENGAGEMENT_DETECTOR``
            (default ``"full"``).

    Returns:
        For ``webcam``: a :class:`MediaPipeFaceDetector`. Otherwise a
        :class:`~inference_worker.detection.TiledFaceDetector` around one (built with the
        source's ``detector_min_confidence``). The same object for every call with the same
        kind and source in this process; all keep BlazeFace's 6 keypoints in frame pixels.

    Raises:
        ValueError: unknown source (the message names the valid ones), or a source given twice.
        django.core.exceptions.ImproperlyConfigured: unknown kind.
        FileNotFoundError: the shipped model file is missing.
    """
    from inference_worker.detection import DEFAULT_SOURCE, TiledFaceDetector, source_settings

    if mode is not None:
        if mode.strip().lower() in DETECTOR_MODELS:
            if kind is not None and kind != mode:
                raise ValueError(f"detector kind given twice: {mode!r} and {kind!r}")
            kind = mode
        elif source is not None:
            raise ValueError(f"source given twice: {mode!r} and {source!r}")
        else:
            source = mode
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


def classifier_backend(backend: str | None = None) -> str:
    """Validate a classifier back end (``None``: ``ENGAGEMENT_CLASSIFIER_BACKEND``, default litert).

    Raises:
        django.core.exceptions.ImproperlyConfigured: not one of :data:`CLASSIFIER_BACKENDS`.
    """
    value = backend or _setting("ENGAGEMENT_CLASSIFIER_BACKEND", DEFAULT_CLASSIFIER_BACKEND)
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
    value = path if path is not None else _setting("ENGAGEMENT_CLASSIFIER_PATH", "")
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
        size = int(_setting("ENGAGEMENT_BATCH_MAX_SIZE", 0) or 0)
        wait = float(_setting("ENGAGEMENT_BATCH_MAX_WAIT_MS", DEFAULT_BATCH_MAX_WAIT_MS))
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


@dataclass(eq=False)
class _Request:
    crops: list[np.ndarray]
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class BatchingClassifier:
    """Classifies the faces of frames analysed concurrently (worker threads) in shared batches.

    Threads call :meth:`predict_proba` as on any :class:`~inference_worker.pipeline.ExpressionModel`
    and block. A background thread collects their requests and, when the pending faces reach
    ``max_batch_size`` or ``max_wait_ms`` has passed since the OLDEST pending request arrived,
    calls the wrapped model ONCE on all their crops (whole requests, never split; a single
    request larger than the batch size is run alone) and hands each caller its rows. On a GPU
    one call of 64 faces costs about as much as one of 1, so a thread-pool worker classifies
    N concurrent frames for the price of ~1 (see the module docstring for how to start one).

    Args:
        model: the wrapped classifier (any ``predict_proba(list of crops) -> (N, 7)``); only the
            background thread calls it.
        max_batch_size: faces per call that trigger it at once, ``>= 1``.
        max_wait_ms: longest wait of the oldest pending request, ms, ``>= 0``.

    Attributes:
        batches: model calls made so far; ``faces``: faces classified so far.

    Raises:
        ValueError: bad ``max_batch_size``/``max_wait_ms``.
    """

    def __init__(
        self, model: ExpressionModel, *, max_batch_size: int = 32, max_wait_ms: float = 5.0
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self.model = model
        self.max_batch_size = int(max_batch_size)
        self.max_wait_ms = float(max_wait_ms)
        self.batches = 0
        self.faces = 0
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def predict_proba(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Classify crops, batched with other threads' crops.

        Args:
            faces: as :meth:`ml.inference.ExpressionClassifier.predict_proba`.

        Returns:
            ``float32`` ``(N, 7)``: the rows the wrapped model gives these crops.

        Raises:
            RuntimeError: the classifier was closed.
            Exception: whatever the wrapped model raised for the batch holding these crops.
        """
        crops = list(faces)
        if not crops:
            return np.zeros((0, 7), np.float32)
        request = _Request(crops)
        with self._cond:
            if self._closed:
                raise RuntimeError("BatchingClassifier is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="classifier-batcher", daemon=True
                )
                self._thread.start()
            self._pending.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _next_batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None  # closed and drained
            while not self._closed:
                waiting = sum(len(r.crops) for r in self._pending)
                left = self._pending[0].arrived + self.max_wait_ms / 1000.0 - time.monotonic()
                if waiting >= self.max_batch_size or left <= 0:
                    break
                self._cond.wait(left)
            batch, size = [], 0
            while self._pending and (
                not batch or size + len(self._pending[0].crops) <= self.max_batch_size
            ):
                request = self._pending.pop(0)
                batch.append(request)
                size += len(request.crops)
            return batch

    def _serve(self) -> None:
        while (batch := self._next_batch()) is not None:
            crops = [crop for request in batch for crop in request.crops]
            try:
                rows = np.asarray(self.model.predict_proba(crops), np.float32)
                if rows.ndim != 2 or rows.shape[0] != len(crops):
                    raise ValueError(
                        f"classifier returned shape {rows.shape} for {len(crops)} crops"
                    )
                self.batches += 1
                self.faces += len(crops)
                start = 0
                for request in batch:
                    request.result = rows[start : start + len(request.crops)]
                    start += len(request.crops)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                for request in batch:
                    request.error = exc
            finally:
                for request in batch:
                    request.done.set()

    def close(self) -> None:
        """Serve what is pending, then stop the background thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def __repr__(self) -> str:
        return (
            f"BatchingClassifier({self.model!r}, max_batch_size={self.max_batch_size}, "
            f"max_wait_ms={self.max_wait_ms:g})"
        )


def warm(*, create_detector: bool = True) -> None:
    """Load the configured models now, so that the first live frame does not pay for it.

    Args:
        create_detector: also build the MediaPipe detector and run it once on a blank frame.
            With ``False`` only MediaPipe's modules are imported (~0.6 s, without TensorFlow)
            and the detector itself is built on first use (~50 ms).

    Raises:
        FileNotFoundError, ValueError, ImproperlyConfigured: as the loaders.
    """
    blank = np.zeros((240, 320, 3), np.uint8)
    if create_detector:
        get_detector().detect(blank)
    else:
        detector_kind()  # fail early on a bad setting
        _import_mediapipe()
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
        for classifier in _classifiers.values():
            close = getattr(classifier, "close", None)
            if close is not None:
                close()
        _classifiers.clear()


# Close MediaPipe graphs before interpreter teardown: MediaPipe's __del__ fails noisily when it
# runs after its C bindings are gone.
atexit.register(clear)
