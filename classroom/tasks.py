"""Celery tasks of the classroom app (thin: unpack ids, call ``services``).

Queued BY NAME from ``classroom.dispatch``; routed to the ``default`` queue by
``CELERY_TASK_ROUTES``.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError

from classroom import services
from contracts import APPLY_RETENTION_TASK, BUILD_REPORT_TASK

logger = logging.getLogger(__name__)


@shared_task(
    name=BUILD_REPORT_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
    ignore_result=True,
)
def build_session_report(session_id: str) -> str | None:
    """Build and upsert the report of a session.

    Delivery: at-least-once. The message is acknowledged only after the task returns
    (``acks_late``; re-queued if the worker dies), and database errors are retried with
    exponential backoff (2 s, 4 s, ... capped at 300 s, jittered, 8 retries). Running it more
    than once is harmless: ``services.build_session_report`` upserts the one ``SessionReport``
    of the session.

    Args:
        session_id: ``ClassSession.pk`` as a string.

    Returns:
        The report's primary key as a string, or ``None`` when the session no longer exists.
    """
    report = services.build_session_report(session_id)
    return None if report is None else str(report.pk)


@shared_task(name=APPLY_RETENTION_TASK, acks_late=True, ignore_result=True)
def apply_retention() -> dict:
    """Delete the per-frame and per-face rows of sessions past the retention period.

    Delivery: at-least-once (``acks_late``), sent by Celery beat every
    ``ENGAGEMENT_RETENTION_INTERVAL_S``; running it twice is harmless
    (``services.apply_retention`` skips sessions already done).

    Returns:
        What was deleted (``services.apply_retention``).
    """
    return services.apply_retention()
