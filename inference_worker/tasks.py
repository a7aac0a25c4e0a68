"""Celery tasks and signal receivers of the worker: thin wrappers around :mod:`inference_worker.live`.

Importing this module loads neither TensorFlow nor MediaPipe: models are loaded by
:mod:`inference_worker.runtime` on first use, once per worker process, after the fork.
"""

from __future__ import annotations

from celery.signals import task_revoked, worker_process_init, worker_ready

from contracts import ANALYZE_FRAME_TASK, AnalysisMode, StreamSource
from inference_worker import live, runtime
from inference_worker.celery import app


@app.task(name=ANALYZE_FRAME_TASK, ignore_result=True, max_retries=0, acks_late=False)
def analyze_frame_task(
    participant_id: int,
    seq: int,
    frame_b64: str,
    captured_at: float | None = None,
    received_at: float | None = None,
    source: str = StreamSource.WEBCAM,
    analysis: str = AnalysisMode.EXPRESSION,
    key: int | None = None,
):
    """Analyse one live frame and record the result (:func:`live.analyze_live_frame`).

    Delivery: AT MOST ONCE. The sender sets a short ``expires`` (``ENGAGEMENT_FRAME_TTL_S``,
    ~10 s), the message is acknowledged before the task runs (no ``acks_late``), and a failed
    frame is never retried: a stale frame is worth nothing, the next one is already on its way.
    Recording is idempotent on ``(participant, key)`` anyway (``key``: the frame's server key;
    a message without one, sent before keys existed, uses ``seq``). Arguments and return value: see
    :func:`inference_worker.live.analyze_live_frame`.
    """
    return live.analyze_live_frame(
        participant_id=participant_id,
        seq=seq,
        frame_b64=frame_b64,
        captured_at=captured_at,
        received_at=received_at,
        source=source,
        analysis=analysis,
        key=key,
    )


@task_revoked.connect(dispatch_uid="inference_worker.count_expired_frames")
def count_expired_frame(sender=None, request=None, expired=False, **kwargs) -> bool:
    """``task_revoked`` receiver: count a live frame that Celery discarded because it expired.

    Frames revoked for other reasons (``celery control revoke``, terminated) are not drops and
    are ignored, as are other tasks' messages.

    Returns:
        ``True`` when a drop was recorded (:func:`live.count_expired_frame`).
    """
    if not expired or getattr(sender, "name", sender) != ANALYZE_FRAME_TASK:
        return False
    return live.count_expired_frame(request)


@worker_process_init.connect(dispatch_uid="inference_worker.warm_models")
def _warm_models_after_fork(**kwargs) -> None:
    """Load the models in each new worker process when ``ENGAGEMENT_WARM_MODELS`` is set."""
    runtime.warm_if_configured()


@worker_ready.connect(dispatch_uid="inference_worker.warm_models_in_pool")
def _warm_models_without_fork(sender=None, **kwargs) -> bool:
    """Load the models in a thread-pool or solo worker (one process, no ``worker_process_init``)
    when ``ENGAGEMENT_WARM_MODELS`` is set; a prefork worker warms its children instead.

    Returns:
        Whether the models were warmed here.
    """
    from celery.concurrency.prefork import TaskPool as PreforkPool

    if isinstance(getattr(sender, "pool", None), PreforkPool):
        return False
    return runtime.warm_if_configured()
