"""Classifying the faces of concurrently analysed frames in shared batches (thread-pool workers).

Classifier back end (``ENGAGEMENT_CLASSIFIER_BACKEND``, chosen in :mod:`inference_worker.runtime`):
``litert`` (default) runs the shipped ``.tflite`` with LiteRT on the CPU; ``keras`` runs the
``.keras`` model with TensorFlow through one traced ``tf.function``
(:class:`ml.inference.ExpressionClassifier`; never ``model.predict`` per frame), for GPU workers. Batching ACROSS frames (:class:`BatchingClassifier`) is for workers
that analyse several frames at once, i.e. a thread pool; a GPU worker is started as::

    ENGAGEMENT_CLASSIFIER_BACKEND=keras ENGAGEMENT_BATCH_MAX_SIZE=64 \
    ENGAGEMENT_BATCH_MAX_WAIT_MS=5 celery -A engagement worker -Q inference \
        --pool threads -c 16

(16 threads decode and detect in parallel; their faces meet in one classifier call of up to 64
faces, issued at the latest 5 ms after the first waiting face). Batching is off by default: in a
prefork or solo worker only one frame is analysed at a time, so every frame would wait
``ENGAGEMENT_BATCH_MAX_WAIT_MS`` for nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference_worker.pipeline import ExpressionModel

DEFAULT_BATCH_MAX_WAIT_MS: float = 5.0
"""Default longest wait for a cross-frame batch to fill, ms (a tenth of a 50 ms frame budget)."""


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
