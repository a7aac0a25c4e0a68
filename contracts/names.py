"""Names both sides must spell the same: Celery tasks and queues, message headers, and the
values that travel with a live frame (stream source, analysis mode) or describe its fate.

``classroom`` sends tasks **by name** (``send_task``) and never imports the worker, so these
strings are the whole interface between the two.
"""

from __future__ import annotations

from enum import StrEnum

ANALYZE_FRAME_TASK = "inference_worker.tasks.analyze_frame_task"
"""Celery task that analyses one live frame (at-most-once; queue :data:`INFERENCE_QUEUE`)."""

BUILD_REPORT_TASK = "classroom.tasks.build_session_report"
APPLY_RETENTION_TASK = "classroom.tasks.apply_retention"
"""Celery task that builds an ended session's report (at-least-once; :data:`DEFAULT_QUEUE`)."""

INFERENCE_QUEUE = "inference"
"""Queue of live frames: workers with the models consume it."""

DEFAULT_QUEUE = "default"
"""Queue of everything else (reports)."""

QUEUES: tuple[str, ...] = (INFERENCE_QUEUE, DEFAULT_QUEUE)
"""Every queue a full worker consumes."""

PARTICIPANT_HEADER = "engagement_participant_id"
"""Message header with the frame's participant id. With :data:`SEQ_HEADER` it lets a worker that
discards an expired message (it never decodes the body then) still count the drop: Celery copies
custom headers into the ``request`` that its ``task_revoked`` signal carries."""

SEQ_HEADER = "engagement_seq"
"""Message header with the frame's sequence number (see :data:`PARTICIPANT_HEADER`)."""


class StreamSource(StrEnum):
    """What a student streams; selects the worker's face-detection mode."""

    WEBCAM = "webcam"
    """A webcam: one whole-frame detection pass."""
    SCREEN = "screen"
    """A shared screen, e.g. a video-call gallery: tiled detection for small faces."""


class AnalysisMode(StrEnum):
    """What a session computes from each face (chosen by the teacher when creating it)."""

    EXPRESSION = "expression"
    """Expressions and attention."""
    ATTENTION = "attention"
    """Attention only: faces are counted and head pose estimated; the expression classifier is
    never called and no expression is stored or shown."""


class AnalysisSite(StrEnum):
    """Where a session's faces are analysed (chosen by the teacher when creating it)."""

    SERVER = "server"
    """The browser sends pictures; the inference workers detect and classify."""
    ON_DEVICE = "on-device"
    """The student's browser detects and classifies; only numbers leave it
    (:mod:`contracts.device`)."""


FRAME_DROP_REASONS: tuple[str, ...] = ("expired", "stale", "undecodable")
"""Why an accepted frame was never analysed: it expired in the broker queue (Celery discarded
it), a worker found it older than ``ENGAGEMENT_FRAME_TTL_S`` when it reached it, or the
worker's decoder (OpenCV) could not read what the intake's check (Pillow) passed."""

QUALITY_ISSUES: tuple[str, ...] = ("too_small", "turned_away", "too_dark", "blurred")
"""Why a detected face's expression was not read (the face-quality gate,
``inference_worker.quality``), in the order the gate checks them: its box is too small, the head
is turned too far from the camera, the crop is too dark (noise as strong as the contrast), or
it is too blurred."""

QUALITY_ISSUE_LABELS: dict[str, str] = {
    "too_small": "too small",
    "turned_away": "turned away",
    "too_dark": "too dark",
    "blurred": "blurred",
}
"""How the board, the report, the exports and ``analyze_media`` say each of
:data:`QUALITY_ISSUES`."""
