"""Retention: per-frame and per-face rows are deleted some days after their session ended; the
stored session report (the aggregate) remains and is what the report pages show from then on."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from classroom.choices import AuditAction, SessionStatus
from classroom.models import ClassSession, Participant, SessionReport
from classroom.services.audit import record_event
from classroom.services.frame_rows import delete_frame_rows
from classroom.services.reports import build_session_report

logger = logging.getLogger(__name__)


def apply_retention(*, now: datetime | None = None, days: float | None = None) -> dict[str, int]:
    """Delete the per-frame and per-face rows of sessions that ended more than ``days`` ago.

    For each such session (ended, ``ended_at`` older than the cutoff, rows not yet deleted):
    the stored report is built first if it is missing, then its ``FrameResult``,
    ``FaceObservation``, ``Track`` and ``TimelineBucket`` rows are deleted in one transaction,
    ``rows_deleted_at`` is set (so no later rebuild overwrites the report with empty figures) and
    one audit record says how many rows went. Participants (names, joined, frame counters) and
    the report remain. Safe to run at any time and more than once.

    Args:
        now: the reference time (aware); default now.
        days: retention in days; default ``ENGAGEMENT_RETENTION_DAYS`` (30).

    Returns:
        ``{"sessions", "frames", "faces", "tracks", "buckets"}``: what was deleted.
    """
    now = now or timezone.now()
    days = settings.ENGAGEMENT_RETENTION_DAYS if days is None else days
    cutoff = now - timedelta(days=float(days))
    totals = {"sessions": 0, "frames": 0, "faces": 0, "tracks": 0, "buckets": 0}
    due = ClassSession.objects.filter(
        status=SessionStatus.ENDED, ended_at__lt=cutoff, rows_deleted_at__isnull=True
    ).order_by("ended_at")
    for session in due:
        if not SessionReport.objects.filter(session=session).exists():
            build_session_report(session.pk)
        with transaction.atomic():
            counts = delete_frame_rows(Participant.objects.filter(session=session))
            ClassSession.objects.filter(pk=session.pk).update(rows_deleted_at=now)
            record_event(
                AuditAction.RETENTION_DELETED,
                session=session,
                detail={**counts, "retention_days": float(days)},
            )
        totals["sessions"] += 1
        for key, value in counts.items():
            totals[key] += value
        logger.info("retention: session %s rows deleted %s", session.pk, counts)
    return totals
