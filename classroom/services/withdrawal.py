"""Withdrawal of consent: a student takes their data back (or a teacher or an admin does it for
them): the stream stops, their per-frame and per-face rows go, the session's figures follow."""

from __future__ import annotations

import logging
from functools import partial

from django.db import transaction
from django.utils import timezone

from classroom import realtime
from classroom.choices import AuditAction, SessionStatus
from classroom.models import ClassSession, Participant, SessionReport
from classroom.services.audit import record_event
from classroom.services.frame_rows import delete_frame_rows
from classroom.services.rate_limit import frame_rate_limiter
from classroom.services.reports import build_session_report

logger = logging.getLogger(__name__)


def withdraw_participant(participant: Participant, *, by=None) -> dict[str, int]:
    """Withdraw a participant's consent and delete what was derived from their frames.

    In one transaction: the participant's ``FrameResult``, ``FaceObservation``, ``Track`` and
    ``TimelineBucket`` rows are deleted, ``withdrawn_at`` is set (the intake then refuses their
    frames: ``no_consent``; ``consent_given_at`` stays, the record of when consent was given),
    and one audit record is written.
    On commit their open stream sockets close (4001) and the dashboards refresh; the board and
    a live report are computed from the remaining rows, and an ended session's stored report is
    rebuilt (after retention, when no rows are left to rebuild from, the participant's row is
    removed from the stored report). Withdrawing twice deletes nothing more.

    Args:
        participant: the participant.
        by: the acting teacher or admin, or ``None`` when the student withdraws themselves.

    Returns:
        ``{"frames", "faces", "tracks", "buckets"}``: rows deleted.
    """
    # Fresh: the caller's participant may carry its session as it was when it joined.
    session = ClassSession.objects.get(pk=participant.session_id)
    with transaction.atomic():
        # The participant's row lock first, as record_frame_result takes it first: a worker
        # recording a result waits, then finds the participant withdrawn (no deadlock).
        Participant.objects.filter(pk=participant.pk, withdrawn_at__isnull=True).update(
            withdrawn_at=timezone.now()
        )
        counts = delete_frame_rows(Participant.objects.filter(pk=participant.pk))
        record_event(
            AuditAction.PARTICIPANT_WITHDRAWN,
            actor=by,
            session=session,
            detail={"participant": participant.pk, "by": "staff" if by else "student", **counts},
        )
        transaction.on_commit(partial(_after_withdrawal, participant.pk, session.pk))
    participant.refresh_from_db()
    frame_rate_limiter.forget(participant.pk)
    if session.status == SessionStatus.ENDED:
        _refresh_stored_report(session, participant.pk)
    logger.info("participant %s withdrew (%s)", participant.pk, counts)
    return counts


def _after_withdrawal(participant_id: int, session_id) -> None:
    realtime.notify_participant_left(participant_id)
    realtime.broadcast(session_id)


def _refresh_stored_report(session, participant_id: int) -> None:
    report = SessionReport.objects.filter(session=session).first()
    if report is None:
        return  # the report task builds it from the remaining rows
    if session.rows_deleted_at is None:
        build_session_report(session.pk)
        return
    # After retention there are no rows to rebuild from: drop the participant's row only.
    summary = dict(report.summary)
    summary["participants"] = [
        row for row in summary.get("participants", []) if row.get("id") != participant_id
    ]
    SessionReport.objects.filter(pk=report.pk).update(summary=summary)
