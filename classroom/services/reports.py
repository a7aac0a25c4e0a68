"""The stored report of a session (``SessionReport``), built when the session ends."""

from __future__ import annotations

import logging

from django.utils import timezone

from classroom import selectors
from classroom.models import ClassSession, SessionReport

logger = logging.getLogger(__name__)


def build_session_report(session_id) -> SessionReport | None:
    """Build (or rebuild) a session's report and upsert it: one ``SessionReport`` per session.

    Idempotent: running it again replaces ``summary`` and ``built_at``, unless retention has
    deleted the session's rows (``rows_deleted_at``): then the stored report is kept as it is,
    since rebuilding from no rows would erase it.

    Args:
        session_id: ``ClassSession.pk`` (UUID or string).

    Returns:
        The ``SessionReport``, or ``None`` when the session does not exist (any more).
    """
    session = ClassSession.objects.select_related("teacher").filter(pk=session_id).first()
    if session is None:
        logger.info("report for session %s skipped: session is gone", session_id)
        return None
    if session.rows_deleted_at is not None:
        report = SessionReport.objects.filter(session=session).first()
        logger.info("report for session %s kept: its rows were deleted by retention", session_id)
        return report
    summary = selectors.session_report(session)
    report, created = SessionReport.objects.update_or_create(
        session=session, defaults={"summary": summary, "built_at": timezone.now()}
    )
    logger.info("report for session %s %s", session_id, "built" if created else "rebuilt")
    return report
