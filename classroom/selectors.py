"""Read queries of the classroom app (no writes, no broadcasts).

Queries fetch narrow value rows and hand them to the pure functions of
:mod:`classroom.aggregates`. The live board (:func:`dashboard_snapshot`, run on every refresh)
reads only a 10-s window of frames and the ``TimelineBucket`` totals, never the whole lesson; the
report (:func:`session_report`, run once at the end) may read every row.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from classroom import aggregates
from classroom.aggregates import BucketRow, FaceRow, FrameRow
from classroom.choices import (
    EXPRESSIONS,
    LIVE_WINDOW_S,
    QUALITY_ISSUES,
    TIMELINE_BUCKET_S,
    AnalysisMode,
    SessionStatus,
)
from classroom.models import (
    ClassSession,
    FaceObservation,
    FrameResult,
    Participant,
    SessionReport,
    TimelineBucket,
)


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


def session_status(session_id) -> str | None:
    """A session's ``status`` (``SessionStatus`` value), or ``None`` when it does not exist."""
    return ClassSession.objects.filter(pk=session_id).values_list("status", flat=True).first()


def on_device_counts(session: ClassSession) -> tuple[int, int]:
    """How much of a session was analysed in the students' browsers (``contracts.device``).

    Returns:
        ``(participants, analyses)``: the participants who sent at least one accepted numbers
        message, and the number of such messages (``Participant.device_analyses`` summed).
    """
    totals = session.participants.filter(device_analyses__gt=0).aggregate(
        participants=Count("pk"), analyses=Sum("device_analyses")
    )
    return int(totals["participants"] or 0), int(totals["analyses"] or 0)


def min_group_size() -> int:
    """``ENGAGEMENT_MIN_GROUP_SIZE`` (default 5, at least 1): expression and attention figures
    are shown only for groups of at least this many faces."""
    return max(1, int(settings.ENGAGEMENT_MIN_GROUP_SIZE))


def emotion_inference_enabled() -> bool:
    """The site-wide off-switch ``ENGAGEMENT_EMOTION_INFERENCE`` (default true): false makes
    every session attention-only."""
    return bool(settings.ENGAGEMENT_EMOTION_INFERENCE)


def expressions_on(session: ClassSession) -> bool:
    """Whether the session computes expressions (``False`` for attention-only sessions, and for
    every session while the site-wide off-switch is off)."""
    return session.analysis != AnalysisMode.ATTENTION and emotion_inference_enabled()


def _frame_rows(
    session: ClassSession, *, since: datetime | None = None, until: datetime | None = None
) -> list[FrameRow]:
    """Analysed frames of the session, all of them or those received in ``(since, until]``.

    One query. With a window, PostgreSQL walks the ``(participant, received_at)`` index
    (``classroom_fr_part_recv``) once per participant of the session, so the cost follows the
    frames in the window, not the length of the lesson.
    """
    qs = FrameResult.objects.filter(participant__session_id=session.pk)
    if since is not None:
        qs = qs.filter(received_at__gt=since, received_at__lte=until)
    rows = qs.order_by().values_list(
        "participant_id", "received_at", "analysed_at", "face_count", "seq", "captured_at"
    )
    return [FrameRow(*row) for row in rows]


def _face_rows(
    session: ClassSession, *, since: datetime | None = None, until: datetime | None = None
) -> list[FaceRow]:
    """Faces of the session (or of frames received in ``(since, until]``), one query.

    ``FaceRow.label`` is the SMOOTHED label (what the board shows); it and the face-quality
    issue are not even read in attention-only sessions (always ``None``).
    """
    qs = FaceObservation.objects.filter(frame__participant__session_id=session.pk)
    if since is not None:
        qs = qs.filter(frame__received_at__gt=since, frame__received_at__lte=until)
    qs = qs.order_by()
    if expressions_on(session):
        rows = qs.values_list(
            "frame__received_at",
            "smoothed_label",
            "attentive",
            "frame__participant_id",
            "quality_issue",
        )
        return [FaceRow(*row) for row in rows]
    rows = qs.values_list("frame__received_at", "attentive", "frame__participant_id")
    return [FaceRow(received_at, None, attentive, pid) for received_at, attentive, pid in rows]


_BUCKET_FIELDS = ("participant_id", "index", "frames", "face_sum", "pose_faces", "attentive_faces")


def _bucket_rows(session: ClassSession, *, min_index: int = 0) -> list[BucketRow]:
    """``TimelineBucket`` rows of the session with ``index >= min_index``, one query.

    Label counts are read only when the session computes expressions (else ``{}``).
    """
    qs = TimelineBucket.objects.filter(participant__session_id=session.pk).order_by()
    if min_index > 0:
        qs = qs.filter(index__gte=min_index)
    if not expressions_on(session):
        return [BucketRow(*row, {}) for row in qs.values_list(*_BUCKET_FIELDS)]
    n = len(_BUCKET_FIELDS)
    return [
        BucketRow(*row[:n], dict(zip(EXPRESSIONS, row[n:], strict=True)))
        for row in qs.values_list(*_BUCKET_FIELDS, *EXPRESSIONS)
    ]


def _timeline_end(session: ClassSession, now: datetime) -> datetime:
    return session.ended_at or now


#: A 2-point tail needs the last 3 buckets: the newest one is left out while it has no frame.
_TAIL_POINTS = 2


def _session_timeline(session: ClassSession, now: datetime, *, full: bool = True) -> list[dict]:
    """5-s timeline from ``started_at`` to ``ended_at`` (or ``now``), from the bucket totals.

    With ``full=False`` only the last 2 points (the same as the last 2 of the full timeline),
    reading the last 3 buckets of each participant. ``[]`` (no query) if never started.
    """
    if session.started_at is None:
        return []
    end = _timeline_end(session, now)
    order = EXPRESSIONS if expressions_on(session) else ()
    group = min_group_size()
    if full:
        return aggregates.suppress_small_groups(
            aggregates.bucket_timeline(
                _bucket_rows(session), session.started_at, end, TIMELINE_BUCKET_S, order
            ),
            group,
        )
    n_buckets = aggregates.timeline_length(session.started_at, end, TIMELINE_BUCKET_S)
    window = _TAIL_POINTS + 1
    buckets = _bucket_rows(session, min_index=max(0, n_buckets - window))
    points = aggregates.bucket_timeline(
        buckets, session.started_at, end, TIMELINE_BUCKET_S, order, max_points=window
    )
    return aggregates.suppress_small_groups(points[-_TAIL_POINTS:], group)


def _participant_totals(session: ClassSession) -> dict[str, int]:
    totals = Participant.objects.filter(session_id=session.pk).aggregate(
        frames_received=Coalesce(Sum("frames_received"), 0),
        frames_rejected=Coalesce(Sum("frames_rejected"), 0),
        frames_analysed=Coalesce(Sum("frames_analysed"), 0),
        frames_dropped=Coalesce(Sum("frames_dropped"), 0),
    )
    return {key: int(value) for key, value in totals.items()}


def dashboard_snapshot(
    session: ClassSession, *, now: datetime | None = None, full_timeline: bool = True
) -> dict:
    """The live dashboard payload of a session (the ``session.update`` message).

    Cost: 4 queries (3 for a session never started), none of which reads the whole lesson:
    the participants' counters (one aggregate), the frames and the faces received in the last
    ``LIVE_WINDOW_S`` (10 s; the ``(participant, received_at)`` index), and the
    ``TimelineBucket`` rows (all of them with ``full_timeline=True``, the last 3 per participant
    otherwise). So a refresh costs the same after 5 minutes or 3 hours of class.

    Args:
        session: the session.
        now: reference time (aware); default ``timezone.now()``.
        full_timeline: ``True`` for the whole timeline (sent on connect), ``False`` for only
            its last 2 points (refreshes; clients merge points by ``"t"``).

    Returns:
        ``{"type": "session.update", "session": uuid str, "status": str,
        "analysis": "expression" | "attention",
        "faces_now": int, "participants": int (participants with a frame in the last 10 s),
        "frames_received", "frames_rejected", "frames_analysed", "frames_dropped": int session
        totals (``Participant`` counters),
        "mix": {label: share 0..1} of the SMOOTHED labels of the faces of the last 10 s, in
        FER2013 order (``{}`` when no face, and always in attention-only sessions),
        "coverage": ``aggregates.expression_coverage`` of the last 10 s's faces: ``{"faces",
        "read", "not_read": {issue: count}}`` for every issue of ``contracts.QUALITY_ISSUES``
        (``None`` in attention-only sessions); the mix is over the ``read`` faces only,
        "attention": share 0..1 of the last 10 s's faces with a head pose that face the
        screen, or ``None`` when none has a pose,
        "lag_ms": arrival-to-analysis latency of the latest analysed frame of the last 10 s,
        ms (``None`` when no frame in the window),
        "lag_p95_ms": 95th percentile of that latency over the window's frames, ms or ``None``,
        "latest": {"<participant id>": {"seq": int, "captured_at": ms since epoch | None}}
        the latest frame of each participant seen in the last 10 s,
        "full": bool (= ``full_timeline``),
        "timeline": [{"t": ISO 8601, "faces": int, "mix": {...}, "attention": float | None},
        ...] 5-s points from ``started_at`` to now (or ``ended_at``); only the last 2 when
        ``full`` is false}``. Windows are by server arrival time of frames.
    """
    now = now or timezone.now()
    totals = _participant_totals(session)
    since = now - timedelta(seconds=LIVE_WINDOW_S)
    frames = _frame_rows(session, since=since, until=now)
    faces = _face_rows(session, since=since, until=now)
    faces_now, participants_now = aggregates.live_counts(frames, now, LIVE_WINDOW_S)
    expressions = expressions_on(session)
    group = min_group_size()
    shown = faces_now >= group  # no figures about fewer than `group` people
    return {
        "type": "session.update",
        "session": str(session.pk),
        "status": session.status,
        "analysis": session.analysis,
        "faces_now": faces_now,
        "participants": participants_now,
        **totals,
        "min_group_size": group,
        "suppressed": not shown,
        "mix": aggregates.window_mix(faces, now, LIVE_WINDOW_S, EXPRESSIONS)
        if expressions and shown
        else {},
        "coverage": aggregates.window_coverage(faces, now, LIVE_WINDOW_S, QUALITY_ISSUES)
        if expressions and shown
        else None,
        "attention": aggregates.window_attention(faces, now, LIVE_WINDOW_S) if shown else None,
        "lag_ms": aggregates.latest_lag_ms(frames),
        "lag_p95_ms": aggregates.lag_percentile_ms(frames, 95),
        "latest": aggregates.latest_seen(frames),
        "full": bool(full_timeline),
        "timeline": _session_timeline(session, now, full=full_timeline),
    }


def dashboard_snapshot_by_id(
    session_id, *, now: datetime | None = None, full_timeline: bool = True
) -> dict | None:
    """:func:`dashboard_snapshot` of the session with this id, freshly read; ``None`` if gone.

    One more query than :func:`dashboard_snapshot` (the session row): 5 in all.
    """
    session = ClassSession.objects.filter(pk=session_id).first()
    if session is None:
        return None
    return dashboard_snapshot(session, now=now, full_timeline=full_timeline)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _lag_stats(frames: list[FrameRow]) -> dict:
    lags = [aggregates.lag_ms(row) for row in frames]

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "mean": r(aggregates.mean(lags)),
        "p50": r(aggregates.percentile(lags, 50)),
        "p95": r(aggregates.percentile(lags, 95)),
        "max": r(max(lags, default=None)),
    }


class _ReportFace(NamedTuple):
    participant_id: int
    label: str | None
    smoothed_label: str | None
    attentive: bool | None
    track_id: int | None
    quality_issue: str | None = None


def _report_faces(session: ClassSession) -> list[_ReportFace]:
    qs = FaceObservation.objects.filter(frame__participant__session_id=session.pk).order_by()
    if expressions_on(session):
        rows = qs.values_list(
            "frame__participant_id",
            "label",
            "smoothed_label",
            "attentive",
            "track_id",
            "quality_issue",
        )
        return [_ReportFace(*row) for row in rows]
    rows = qs.values_list("frame__participant_id", "attentive", "track_id")
    return [_ReportFace(pid, None, None, attentive, track) for pid, attentive, track in rows]


def _face_summary(faces: list[_ReportFace], order: Sequence[str]) -> dict:
    with_pose = [face.attentive for face in faces if face.attentive is not None]
    return {
        "attention": aggregates.attention_share(sum(with_pose), len(with_pose)),
        "tracks": len({face.track_id for face in faces if face.track_id is not None}),
        "mix": aggregates.expression_mix((face.smoothed_label for face in faces), order),
        "mix_raw": aggregates.expression_mix((face.label for face in faces), order),
    }


#: The per-participant figures a report may show and export: participation, nothing about
#: expressions or attention (reports stored before this rule are filtered on reading).
PARTICIPATION_KEYS: tuple[str, ...] = (
    "id",
    "display_name",
    "joined_at",
    "consent_given_at",
    "last_seen_at",
    "frames_received",
    "frames_rejected",
    "frames_analysed",
    "frames_dropped",
    "device_analyses",
    "faces",
    "faces_per_frame",
    "tracks",
)


def report_for_display(session: ClassSession) -> dict:
    """The report the report page and the exports show: the stored one (``SessionReport``) for
    an ended session that has it, otherwise :func:`session_report` computed now (a live
    session, or an ended one whose report task has not run yet). After retention
    (``rows_deleted_at``) the stored report is all that is left."""
    if session.status == SessionStatus.ENDED:
        stored = SessionReport.objects.filter(session=session).values_list("summary", flat=True)
        summary = stored.first()
        if summary is not None:
            participants = [
                {key: row.get(key) for key in PARTICIPATION_KEYS}
                for row in summary.get("participants", [])
            ]
            return {**summary, "participants": participants}
    return session_report(session)


def session_report(session: ClassSession, *, now: datetime | None = None) -> dict:
    """The per-session report (JSON-able; stored by ``services.build_session_report``).

    Runs once per session, so it reads every frame and face row (lag percentiles, distinct
    tracks, raw labels); the timeline comes from the ``TimelineBucket`` totals. 4 queries plus
    the teacher when not selected with the session.

    Args:
        session: the session (any status; normally ended).
        now: reference time for a session still live (aware); default ``timezone.now()``.

    Returns:
        ``{"session", "title", "join_code", "teacher", "status",
        "analysis" ("expression" | "attention"), "analysis_site" ("server" | "on-device": the
        figures of an on-device session were computed in the students' browsers and are not
        verified), "frame_interval_s", "created_at", "started_at", "ended_at" (ISO 8601 or None), "duration_s" (float | None),
        "generated_at",
        "totals": {"participants", "frames_received", "frames_rejected", "frames_analysed",
        "frames_dropped", "faces", "faces_per_frame" (float | None), "tracks"},
        "mix": {label: share 0..1} of the SMOOTHED labels of every face (``{}`` when none),
        "mix_raw": the same for the classifier's raw labels,
        "coverage": ``aggregates.expression_coverage`` of every face (faces whose expression
        was read, and why the others were not; ``None`` in attention-only sessions),
        "attention": share 0..1 of faces with a head pose that face the screen, or None,
        "timeline": as in :func:`dashboard_snapshot` (whole session),
        "lag_ms": {"mean", "p50", "p95", "max"} arrival-to-analysis latency (None when empty),
        "participants": [{"id", "display_name", "joined_at", "consent_given_at", "last_seen_at",
        "frames_received", "frames_rejected", "frames_analysed", "frames_dropped",
        "device_analyses" (numbers messages from the participant's browser), "faces",
        "faces_per_frame", "tracks" (distinct face tracks)}, ...] in join order: participation
        only, no expression or attention figure per participant (no individual profiles)}``.
        In attention-only sessions every ``mix``/``mix_raw`` is ``{}`` and no expression column
        is read.
    """
    now = now or timezone.now()
    order = EXPRESSIONS if expressions_on(session) else ()
    frames = _frame_rows(session)
    faces = _report_faces(session)
    participants = list(session.participants.order_by("joined_at", "id"))

    frames_by_participant: dict[int, list[FrameRow]] = defaultdict(list)
    for row in frames:
        frames_by_participant[row.participant_id].append(row)
    faces_by_participant: dict[int, list[_ReportFace]] = defaultdict(list)
    for face in faces:
        faces_by_participant[face.participant_id].append(face)

    def per_frame(total_faces: int, n_frames: int) -> float | None:
        return round(total_faces / n_frames, 3) if n_frames else None

    per_participant = []
    for p in participants:
        own = frames_by_participant.get(p.pk, [])
        own_faces = sum(row.face_count for row in own)
        tracks = len(
            {f.track_id for f in faces_by_participant.get(p.pk, []) if f.track_id is not None}
        )
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
                "frames_dropped": p.frames_dropped,
                "device_analyses": p.device_analyses,
                "faces": own_faces,
                "faces_per_frame": per_frame(own_faces, len(own)),
                "tracks": tracks,
            }
        )

    total_faces = sum(row.face_count for row in frames)
    summary = _face_summary(faces, order)
    group = min_group_size()
    # People, not frames: distinct face tracks (at least the most faces seen in one frame).
    people = max(summary["tracks"], max((row.face_count for row in frames), default=0))
    shown = people >= group
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
        "analysis": session.analysis,
        "analysis_site": session.analysis_site,
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
            "frames_dropped": sum(p.frames_dropped for p in participants),
            "faces": total_faces,
            "faces_per_frame": per_frame(total_faces, len(frames)),
            "tracks": summary["tracks"],
        },
        "min_group_size": group,
        "suppressed": not shown,
        "mix": summary["mix"] if shown else {},
        "mix_raw": summary["mix_raw"] if shown else {},
        "coverage": aggregates.expression_coverage(
            (face.quality_issue for face in faces), QUALITY_ISSUES
        )
        if order and shown
        else None,
        "attention": summary["attention"] if shown else None,
        "timeline": _session_timeline(session, now),
        "lag_ms": _lag_stats(frames),
        "participants": per_participant,
    }


#: Per-face export (CSV ``table=faces``), every session: (column, ORM path) pairs. No
#: participant id and no frame number: the faces are anonymous, so that the export cannot be
#: joined to the participants table into an individual emotion profile.
_FACE_EXPORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("received_at", "frame__received_at"),
    ("face_index", "index"),
    ("track", "track__number"),
    ("box_x", "box_x"),
    ("box_y", "box_y"),
    ("box_w", "box_w"),
    ("box_h", "box_h"),
    ("score", "score"),
    ("yaw_deg", "yaw_deg"),
    ("pitch_deg", "pitch_deg"),
    ("attentive", "attentive"),
    ("assessed", "assessed"),
    ("quality_issue", "quality_issue"),
)
#: Columns of the per-face export (CSV ``table=faces``), every session.
FACE_EXPORT_COLUMNS: tuple[str, ...] = tuple(column for column, _ in _FACE_EXPORT_FIELDS)
#: Extra columns of the per-face export when the session computes expressions.
FACE_EXPORT_EXPRESSION_COLUMNS: tuple[str, ...] = (
    "label",
    "confidence",
    "smoothed_label",
    "smoothed_confidence",
)


def face_export(session: ClassSession) -> tuple[list[str], Iterator[list]]:
    """One row per observed face of the session, for the CSV export (numbers only).

    Args:
        session: the session.

    Returns:
        ``(header, rows)``: ``header`` is :data:`FACE_EXPORT_COLUMNS`, followed by
        :data:`FACE_EXPORT_EXPRESSION_COLUMNS` unless the session is attention-only; ``rows``
        lazily yields lists in that order, by frame arrival then face index (one streamed
        query). ``received_at`` is ISO 8601; ``track`` is the anonymous track number within its
        (unnamed) stream (``None`` if untracked); ``yaw_deg``/``pitch_deg`` in degrees;
        ``attentive`` bool or ``None``; ``assessed`` whether the face-quality gate let the
        expression be read (``None``: recorded without a gate) and ``quality_issue`` why not
        (``too_small``, ``turned_away``, ``blurred`` or empty); ``label``/``smoothed_label``
        FER2013 names (empty for faces not read);
        ``confidence`` the raw probability of ``label`` and ``smoothed_confidence`` the smoothed
        probability of ``smoothed_label`` (0..1).
    """
    expressions = expressions_on(session)
    fields = [path for _, path in _FACE_EXPORT_FIELDS]
    if expressions:
        fields += ["label", "confidence", "smoothed_label", "smoothed_probabilities"]
    qs = (
        FaceObservation.objects.filter(frame__participant__session_id=session.pk)
        .order_by("frame__received_at", "frame_id", "index")
        .values_list(*fields)
    )
    header = list(FACE_EXPORT_COLUMNS)
    if expressions:
        header += FACE_EXPORT_EXPRESSION_COLUMNS

    def rows() -> Iterator[list]:
        for row in qs.iterator(chunk_size=2000):
            out = list(row[: len(FACE_EXPORT_COLUMNS)])
            out[0] = _iso(out[0])
            if expressions:
                label, confidence, smoothed_label, smoothed = row[len(FACE_EXPORT_COLUMNS) :]
                out += [
                    label,
                    confidence,
                    smoothed_label,
                    _label_probability(smoothed, smoothed_label),
                ]
            yield out

    return header, rows()


def _label_probability(probabilities, label: str | None) -> float | None:
    """The probability of ``label`` in a 7-vector (FER2013 order), or ``None``."""
    if label not in EXPRESSIONS or not isinstance(probabilities, list | tuple):
        return None
    i = EXPRESSIONS.index(label)
    return probabilities[i] if i < len(probabilities) else None
