"""Session lifecycle: create a draft, start it (draft -> live), end it (-> ended)."""

from __future__ import annotations

import logging
import math
from functools import partial

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from classroom import dispatch, realtime, selectors
from classroom.choices import (
    MAX_FRAME_INTERVAL_S,
    MIN_FRAME_INTERVAL_S,
    TITLE_MAX_LENGTH,
    AnalysisMode,
    AnalysisSite,
    AuditAction,
    SessionStatus,
)
from classroom.models import ClassSession, generate_join_code
from classroom.services.audit import record_event
from classroom.services.errors import SessionStateError
from classroom.services.rate_limit import frame_rate_limiter

logger = logging.getLogger(__name__)


def _require_manager(session: ClassSession, user) -> None:
    if not session.can_be_managed_by(user):
        raise PermissionDenied("Only the session's teacher or an admin may do this.")


def create_session(
    *,
    teacher,
    title: str,
    frame_interval_s: float = 1.0,
    analysis: str = AnalysisMode.EXPRESSION,
    analysis_site: str = AnalysisSite.SERVER,
    server_fallback: bool = False,
) -> ClassSession:
    """Create a draft session with a fresh join code.

    Args:
        teacher: the owning user (authenticated, active).
        title: 1 to 200 characters after collapsing whitespace.
        frame_interval_s: seconds between frames per student, in [0.2, 10].
        analysis: ``choices.AnalysisMode`` value: ``"expression"`` (expressions and attention,
            the default) or ``"attention"`` (attention only: no expression is computed, stored
            or shown). With the site-wide off-switch (``ENGAGEMENT_EMOTION_INFERENCE=false``)
            every session is created attention-only, whatever is asked.
        analysis_site: ``choices.AnalysisSite`` value: ``"server"`` (the browsers send
            pictures, the default) or ``"on-device"`` (the browsers analyse and send only
            numbers, :mod:`contracts.device`).
        server_fallback: on-device sessions only: a browser that cannot analyse on the device
            may send pictures instead. Stored false for a server session.

    Returns:
        The saved ``ClassSession`` (status ``draft``).

    Raises:
        PermissionDenied: ``teacher`` is anonymous or inactive.
        ValidationError: bad title, interval (code ``bad_interval``), analysis mode (code
            ``bad_analysis``) or analysis site (code ``bad_analysis_site``).
    """
    if not getattr(teacher, "is_authenticated", False) or not teacher.is_active:
        raise PermissionDenied("Sign in to create a session.")
    title = " ".join(str(title or "").split())
    if not title or len(title) > TITLE_MAX_LENGTH:
        raise ValidationError(
            f"Title must be 1 to {TITLE_MAX_LENGTH} characters.", code="bad_title"
        )
    try:
        interval = float(frame_interval_s)
    except (TypeError, ValueError):
        interval = math.nan
    if not (MIN_FRAME_INTERVAL_S <= interval <= MAX_FRAME_INTERVAL_S):
        raise ValidationError(
            f"Frame interval must be between {MIN_FRAME_INTERVAL_S} and {MAX_FRAME_INTERVAL_S} s.",
            code="bad_interval",
        )
    if analysis not in AnalysisMode.values:
        raise ValidationError(
            f"Analysis must be one of {', '.join(AnalysisMode.values)}.", code="bad_analysis"
        )
    if analysis_site not in AnalysisSite.values:
        raise ValidationError(
            f"Analysis site must be one of {', '.join(AnalysisSite.values)}.",
            code="bad_analysis_site",
        )
    if not selectors.emotion_inference_enabled():
        analysis = AnalysisMode.ATTENTION
    for _ in range(10):
        code = generate_join_code()
        try:
            with transaction.atomic():
                session = ClassSession.objects.create(
                    teacher=teacher,
                    title=title,
                    frame_interval_s=interval,
                    join_code=code,
                    analysis=str(analysis),
                    analysis_site=str(analysis_site),
                    server_fallback=bool(server_fallback)
                    and analysis_site == AnalysisSite.ON_DEVICE,
                )
        except IntegrityError:
            if ClassSession.objects.filter(join_code=code).exists():
                continue  # join code collision (about 1 in 1e9 per live code): draw again
            raise
        logger.info("session %s created by user %s", session.pk, teacher.pk)
        return session
    raise RuntimeError("could not draw a unique join code")


def start_session(session: ClassSession, *, by) -> ClassSession:
    """Start a draft session (draft -> live). Starting a live session is a no-op.

    Args:
        session: the session.
        by: the acting user; must be the session's teacher or an admin.

    Returns:
        The session, refreshed from the database.

    Raises:
        PermissionDenied: ``by`` may not manage the session.
        SessionStateError: the session has ended.
    """
    _require_manager(session, by)
    with transaction.atomic():
        changed = ClassSession.objects.filter(pk=session.pk, status=SessionStatus.DRAFT).update(
            status=SessionStatus.LIVE, started_at=timezone.now()
        )
        session.refresh_from_db()
        if not changed and session.status == SessionStatus.ENDED:
            raise SessionStateError("This session has ended and cannot be started again.")
        if changed:
            transaction.on_commit(partial(realtime.broadcast, session.pk))
    if changed:
        record_event(AuditAction.SESSION_STARTED, actor=by, session=session)
        logger.info("session %s started by user %s", session.pk, by.pk)
    return session


def end_session(session: ClassSession, *, by) -> ClassSession:
    """End a session (live -> ended, or draft -> ended to cancel). Ending twice is a no-op.

    On commit: the dashboards refresh, every student socket gets ``session.ended`` and closes,
    and the report task ``classroom.tasks.build_session_report`` is queued by name.

    Args:
        session: the session.
        by: the acting user; must be the session's teacher or an admin.

    Returns:
        The session, refreshed from the database.

    Raises:
        PermissionDenied: ``by`` may not manage the session.
    """
    _require_manager(session, by)
    with transaction.atomic():
        changed = ClassSession.objects.filter(
            pk=session.pk, status__in=[SessionStatus.DRAFT, SessionStatus.LIVE]
        ).update(status=SessionStatus.ENDED, ended_at=timezone.now())
        session.refresh_from_db()
        if changed:
            participant_ids = list(session.participants.values_list("pk", flat=True))
            transaction.on_commit(partial(_after_end, session.pk, participant_ids))
    if changed:
        record_event(AuditAction.SESSION_ENDED, actor=by, session=session)
        logger.info("session %s ended by user %s", session.pk, by.pk)
    return session


def _after_end(session_id, participant_ids: list[int]) -> None:
    for participant_id in participant_ids:
        frame_rate_limiter.forget(participant_id)
    realtime.broadcast(session_id)
    realtime.notify_session_ended(participant_ids)
    dispatch.send_build_report(session_id=session_id)
