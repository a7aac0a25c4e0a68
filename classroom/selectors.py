"""Read queries of the classroom app (no writes, no broadcasts).

Queries fetch narrow value rows and hand them to the pure functions of
:mod:`classroom.aggregates`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from django.db.models import Count, QuerySet
from django.utils import timezone

from classroom import aggregates
from classroom.aggregates import FaceRow, FrameRow
from classroom.choices import EXPRESSIONS, LIVE_WINDOW_S, TIMELINE_BUCKET_S
from classroom.models import ClassSession, FaceObservation, FrameResult, Participant


def sessions_for(user) -> QuerySet[ClassSession]:
    """Sessions a user may see: all for admins (staff, superusers, role admin), else their own.

    Args:
        user: a ``User`` or ``AnonymousUser``.

    Returns:
        Newest first, with ``teacher`` selected and ``participant_count`` annotated; empty for
        anonymous or inactive users.
    """
    qs = ClassSession.objects.select_related("teacher").annotate(
        participant_count=Count("participants", distinct=True)
    )
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return qs.none()
    if user.is_admin:
        return qs
    return qs.filter(teacher=user)


def session_for(user, session_id) -> ClassSession | None:
    """The session ``session_id`` if ``user`` may manage or watch it, else ``None``.

    Args:
        user: a ``User`` or ``AnonymousUser``.
        session_id: a UUID or its string; malformed ids give ``None``.
    """
    try:
        session_id = uuid.UUID(str(session_id))
    except ValueError:
        return None
    session = ClassSession.objects.select_related("teacher").filter(pk=session_id).first()
    if session is None or not session.can_be_managed_by(user):
        return None
    return session


def session_by_code(code: str) -> ClassSession | None:
    """The session with this join code (case and spaces ignored), or ``None``."""
    normalised = "".join(str(code).split()).replace("-", "").upper()
    if not normalised:
        return None
    return ClassSession.objects.filter(join_code=normalised).first()


def participant_for_stream(participant_id) -> Participant | None:
    """The participant with its session, or ``None`` when missing (or the id is malformed)."""
    try:
        participant_id = int(participant_id)
    except (TypeError, ValueError):
        return None
    return Participant.objects.select_related("session").filter(pk=participant_id).first()


def _frame_rows(session: ClassSession) -> list[FrameRow]:
    rows = FrameResult.objects.filter(participant__session=session).values_list(
        "participant_id", "received_at", "analysed_at", "face_count"
    )
    return [FrameRow(*row) for row in rows]


def _face_rows(session: ClassSession) -> list[tuple[int, FaceRow]]:
    rows = FaceObservation.objects.filter(frame__participant__session=session).values_list(
        "frame__participant_id", "frame__received_at", "label"
    )
    return [
        (participant_id, FaceRow(received_at, label)) for participant_id, received_at, label in rows
    ]


def _timeline_end(session: ClassSession, now: datetime) -> datetime:
    return session.ended_at or now


def _session_timeline(session: ClassSession, frames, faces, now: datetime) -> list[dict]:
    """5-s timeline from the session's start to its end (or ``now``); ``[]`` if never started."""
    if session.started_at is None:
        return []
    return aggregates.timeline(
        frames,
        faces,
        session.started_at,
        _timeline_end(session, now),
        TIMELINE_BUCKET_S,
        EXPRESSIONS,
    )


def dashboard_snapshot(session: ClassSession, *, now: datetime | None = None) -> dict:
    """The live dashboard payload of a session (the ``session.update`` message of CONTRACTS.md).

    Args:
        session: the session.
        now: reference time (aware); default ``timezone.now()``.

    Returns:
        ``{"type": "session.update", "session": uuid str, "status": str,
        "faces_now": int, "participants": int, "frames_analysed": int,
        "mix": {label: share} over faces of the last 10 s (or ``{}``),
        "timeline": [{"t": ISO 8601, "faces": int, "mix": {...}}, ...] one point per 5-s bucket
        from ``started_at`` to now (or ``ended_at``), "lag_ms": float | None}``.
        Windows are by server arrival time of frames. Two queries.
    """
    now = now or timezone.now()
    frames = _frame_rows(session)
    faces = [face for _, face in _face_rows(session)]
    faces_now, participants_now = aggregates.live_counts(frames, now, LIVE_WINDOW_S)
    points = _session_timeline(session, frames, faces, now)
    return {
        "type": "session.update",
        "session": str(session.pk),
        "status": session.status,
        "faces_now": faces_now,
        "participants": participants_now,
        "frames_analysed": len(frames),
        "mix": aggregates.window_mix(faces, now, LIVE_WINDOW_S, EXPRESSIONS),
        "timeline": points,
        "lag_ms": aggregates.latest_lag_ms(frames),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _lag_stats(frames: list[FrameRow]) -> dict:
    lags = [(row.analysed_at - row.received_at).total_seconds() * 1000.0 for row in frames]

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "mean": r(aggregates.mean(lags)),
        "p50": r(aggregates.percentile(lags, 50)),
        "p95": r(aggregates.percentile(lags, 95)),
        "max": r(max(lags, default=None)),
    }


def session_report(session: ClassSession, *, now: datetime | None = None) -> dict:
    """The per-session report (JSON-able; stored by ``services.build_session_report``).

    Args:
        session: the session (any status; normally ended).
        now: reference time for a session still live (aware); default ``timezone.now()``.

    Returns:
        ``{"session", "title", "join_code", "teacher", "status", "frame_interval_s",
        "created_at", "started_at", "ended_at" (ISO 8601 or None), "duration_s" (float | None),
        "generated_at",
        "totals": {"participants", "frames_received", "frames_rejected", "frames_analysed",
        "faces", "faces_per_frame" (float | None)},
        "mix": {label: share} over every face of the session (or ``{}``),
        "timeline": as in :func:`dashboard_snapshot`,
        "lag_ms": {"mean", "p50", "p95", "max"} arrival-to-analysis latency (None when empty),
        "participants": [{"id", "display_name", "joined_at", "consent_given_at", "last_seen_at",
        "frames_received", "frames_rejected", "frames_analysed", "faces",
        "faces_per_frame", "mix"}, ...] in join order}``.
    """
    now = now or timezone.now()
    frames = _frame_rows(session)
    face_rows = _face_rows(session)
    faces = [face for _, face in face_rows]
    participants = list(session.participants.order_by("joined_at", "id"))

    frames_by_participant: dict[int, list[FrameRow]] = defaultdict(list)
    for row in frames:
        frames_by_participant[row.participant_id].append(row)
    labels_by_participant: dict[int, list[str]] = defaultdict(list)
    for participant_id, face in face_rows:
        labels_by_participant[participant_id].append(face.label)

    def per_frame(total_faces: int, n_frames: int) -> float | None:
        return round(total_faces / n_frames, 3) if n_frames else None

    per_participant = []
    for p in participants:
        own = frames_by_participant.get(p.pk, [])
        own_faces = sum(row.face_count for row in own)
        per_participant.append(
            {
                "id": p.pk,
                "display_name": p.display_name,
                "joined_at": _iso(p.joined_at),
                "consent_given_at": _iso(p.consent_given_at),
                "last_seen_at": _iso(p.last_seen_at),
                "frames_received": p.frames_received,
                "frames_rejected": p.frames_rejected,
                "frames_analysed": len(own),
                "faces": own_faces,
                "faces_per_frame": per_frame(own_faces, len(own)),
                "mix": aggregates.expression_mix(labels_by_participant.get(p.pk, ()), EXPRESSIONS),
            }
        )

    total_faces = sum(row.face_count for row in frames)
    points = _session_timeline(session, frames, faces, now)
    duration = (
        (_timeline_end(session, now) - session.started_at).total_seconds()
        if session.started_at is not None
        else None
    )
    return {
        "session": str(session.pk),
        "title": session.title,
        "join_code": session.join_code,
        "teacher": session.teacher.get_username(),
        "status": session.status,
        "frame_interval_s": session.frame_interval_s,
        "created_at": _iso(session.created_at),
        "started_at": _iso(session.started_at),
        "ended_at": _iso(session.ended_at),
        "duration_s": duration,
        "generated_at": _iso(now),
        "totals": {
            "participants": len(participants),
            "frames_received": sum(p.frames_received for p in participants),
            "frames_rejected": sum(p.frames_rejected for p in participants),
            "frames_analysed": len(frames),
            "faces": total_faces,
            "faces_per_frame": per_frame(total_faces, len(frames)),
        },
        "mix": aggregates.expression_mix((face.label for face in faces), EXPRESSIONS),
        "timeline": points,
        "lag_ms": _lag_stats(frames),
        "participants": per_participant,
    }


def dashboard_snapshot_by_id(session_id, *, now: datetime | None = None) -> dict | None:
    """:func:`dashboard_snapshot` of the session with this id, freshly read; ``None`` if gone."""
    session = ClassSession.objects.filter(pk=session_id).first()
    return None if session is None else dashboard_snapshot(session, now=now)
