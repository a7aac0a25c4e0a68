"""Data model of the classroom app.

Only derived numbers are stored: no pixels, crops or embeddings anywhere.
Invariants live in the database as constraints, so every writer (web process, worker processes,
admin) is held to them.
"""

import secrets
import uuid

from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from classroom.choices import (
    DEFAULT_FRAME_INTERVAL_S,
    DISPLAY_NAME_MAX_LENGTH,
    EXPRESSION_CHOICES,
    EXPRESSIONS,
    JOIN_CODE_ALPHABET,
    JOIN_CODE_LENGTH,
    MAX_FRAME_INTERVAL_S,
    MIN_FRAME_INTERVAL_S,
    QUALITY_ISSUE_CHOICES,
    QUALITY_ISSUES,
    TITLE_MAX_LENGTH,
    AnalysisMode,
    AnalysisSite,
    AuditAction,
    SessionStatus,
    UserRole,
)


def generate_join_code() -> str:
    """Return a random join code.

    Returns:
        ``JOIN_CODE_LENGTH`` (6) upper-case characters from ``JOIN_CODE_ALPHABET`` (31 symbols,
        about 8.9e8 codes), drawn with :mod:`secrets`. Uniqueness is enforced by the database;
        ``services.create_session`` retries on a collision.
    """
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


class User(AbstractUser):
    """An account: a teacher or an admin. Students join sessions without an account."""

    role = models.CharField(max_length=16, choices=UserRole.choices, default=UserRole.TEACHER)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=UserRole.values), name="classroom_user_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.get_username()

    @property
    def is_admin(self) -> bool:
        """Whether the user sees every session: role "admin", staff or superuser."""
        return bool(
            self.is_active and (self.is_staff or self.is_superuser or self.role == UserRole.ADMIN)
        )


class ClassSession(models.Model):
    """One class run by a teacher; students join it with ``join_code``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    teacher = models.ForeignKey(User, on_delete=models.CASCADE, related_name="class_sessions")
    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    frame_interval_s = models.FloatField(
        default=DEFAULT_FRAME_INTERVAL_S,
        validators=[
            MinValueValidator(MIN_FRAME_INTERVAL_S),
            MaxValueValidator(MAX_FRAME_INTERVAL_S),
        ],
        help_text="Seconds between two frames sent by each student (0.2 to 10).",
    )
    join_code = models.CharField(
        max_length=JOIN_CODE_LENGTH, unique=True, default=generate_join_code, editable=False
    )
    status = models.CharField(
        max_length=8, choices=SessionStatus.choices, default=SessionStatus.DRAFT, db_index=True
    )
    analysis = models.CharField(
        max_length=16,
        choices=AnalysisMode.choices,
        default=AnalysisMode.EXPRESSION,
        help_text="Attention only: no expression is computed, stored or shown.",
    )
    analysis_site = models.CharField(
        max_length=16,
        choices=AnalysisSite.choices,
        default=AnalysisSite.SERVER,
        help_text="Where faces are analysed: on the server (the browser sends pictures) or on "
        "each student's device (the browser sends only numbers).",
    )
    server_fallback = models.BooleanField(
        default=False,
        help_text="On-device sessions only: a browser that cannot analyse on the device may "
        "send pictures to the server instead.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    rows_deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When retention deleted this session's per-frame and per-face rows; its "
        "stored report (SessionReport) remains and is what the report pages show.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(frame_interval_s__gte=MIN_FRAME_INTERVAL_S)
                & Q(frame_interval_s__lte=MAX_FRAME_INTERVAL_S),
                name="classroom_session_frame_interval_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    status=SessionStatus.DRAFT, started_at__isnull=True, ended_at__isnull=True
                )
                | Q(status=SessionStatus.LIVE, started_at__isnull=False, ended_at__isnull=True)
                | Q(status=SessionStatus.ENDED, ended_at__isnull=False),
                name="classroom_session_status_timestamps",
            ),
            models.CheckConstraint(
                condition=Q(analysis__in=AnalysisMode.values),
                name="classroom_session_analysis_valid",
            ),
            models.CheckConstraint(
                condition=Q(analysis_site__in=AnalysisSite.values),
                name="classroom_session_analysis_site_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.join_code}, {self.status})"

    def can_be_managed_by(self, user) -> bool:
        """Whether ``user`` may start, end or watch this session (its teacher, or an admin)."""
        if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
            return False
        return user.pk == self.teacher_id or bool(getattr(user, "is_admin", False))


class Participant(models.Model):
    """A student's presence in one session. Exists only after explicit consent."""

    session = models.ForeignKey(ClassSession, on_delete=models.CASCADE, related_name="participants")
    display_name = models.CharField(max_length=DISPLAY_NAME_MAX_LENGTH)
    consent_given_at = models.DateTimeField(
        help_text="When the student ticked the consent box (required to join)."
    )
    joined_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    withdrawn_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the student (or their teacher or an admin) withdrew consent: the "
        "participant's per-frame and per-face rows were deleted and no frame is accepted.",
    )
    frames_received = models.PositiveIntegerField(
        default=0,
        help_text="Frame messages received, accepted and rejected: pictures, or numbers in an "
        "on-device session.",
    )
    frames_rejected = models.PositiveIntegerField(
        default=0, help_text="Frame messages rejected at intake (a subset of frames_received)."
    )
    frames_analysed = models.PositiveIntegerField(
        default=0, help_text="Accepted frames whose analysis was recorded."
    )
    device_analyses = models.PositiveIntegerField(
        default=0,
        help_text="Accepted numbers messages (on-device analysis): frames this participant's "
        "browser analysed itself; the server cannot verify their figures.",
    )
    frames_dropped = models.PositiveIntegerField(
        default=0,
        help_text=(
            "Accepted frames never analysed: older than ENGAGEMENT_FRAME_TTL_S when a worker "
            "reached them (expired in the queue, or stale)."
        ),
    )

    class Meta:
        ordering = ["joined_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(frames_rejected__lte=models.F("frames_received")),
                name="classroom_participant_rejected_le_received",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} in {self.session_id}"


class FrameResult(models.Model):
    """The analysis of one frame: counts, sizes and timings only, never pixels."""

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="frame_results"
    )
    seq = models.PositiveBigIntegerField(
        help_text="The frame's server key: the participant's count of received messages after "
        "it (unique per participant, increasing even when the client's counter restarts)."
    )
    captured_at = models.DateTimeField(null=True, blank=True, help_text="Client clock.")
    received_at = models.DateTimeField(help_text="Server clock, when the frame arrived.")
    analysed_at = models.DateTimeField(default=timezone.now)
    face_count = models.PositiveSmallIntegerField(default=0)
    width = models.PositiveIntegerField(help_text="Decoded frame width, pixels.")
    height = models.PositiveIntegerField(help_text="Decoded frame height, pixels.")
    timings_ms = models.JSONField(default=dict, blank=True, help_text="Per-stage timings, ms.")

    class Meta:
        ordering = ["received_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "seq"], name="classroom_frame_result_unique_seq"
            ),
        ]
        indexes = [
            models.Index(fields=["participant", "received_at"], name="classroom_fr_part_recv")
        ]

    def __str__(self) -> str:
        return f"frame {self.seq} of participant {self.participant_id}: {self.face_count} face(s)"


class Track(models.Model):
    """One face followed across a participant's frames: an anonymous number, no identity.

    Tracks are matched by box overlap and position only (no face recognition, no embeddings);
    ``number`` is 1, 2, ... within the participant. ``smoothed_probabilities`` is the running
    exponential moving average of the track's expression probabilities (``None`` in
    attention-only sessions).
    """

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="tracks")
    number = models.PositiveIntegerField(help_text="Anonymous track number within the participant.")
    first_seen_at = models.DateTimeField(help_text="Arrival time of the first matched frame.")
    last_seen_at = models.DateTimeField(help_text="Arrival time of the last matched frame.")
    last_seq = models.PositiveBigIntegerField(help_text="seq of the last matched frame.")
    box_x = models.FloatField(help_text="Last box, left edge, fraction of frame width (0..1).")
    box_y = models.FloatField(help_text="Last box, top edge, fraction of frame height (0..1).")
    box_w = models.FloatField(help_text="Last box width, fraction of frame width (0..1).")
    box_h = models.FloatField(help_text="Last box height, fraction of frame height (0..1).")
    hits = models.PositiveIntegerField(default=1, help_text="Frames matched to this track.")
    smoothed_probabilities = models.JSONField(
        null=True, blank=True, help_text="EMA of the 7 probabilities, FER2013 order."
    )
    smoothed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Arrival time of the newest frame that moved the smoothed probabilities.",
    )

    class Meta:
        ordering = ["participant", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "number"], name="classroom_track_unique_number"
            ),
        ]

    def __str__(self) -> str:
        return f"track {self.number} of participant {self.participant_id}"


class FaceObservation(models.Model):
    """One face found in a frame: normalised box, expression and head pose numbers, no pixels.

    ``probabilities``/``label``/``confidence`` are the classifier's raw output for this frame;
    ``smoothed_*`` are the track's moving average after this frame (what the board shows). All
    expression fields are ``None`` in attention-only sessions, and for faces the face-quality
    gate did not assess (``assessed`` false, ``quality_issue`` says why: too small, turned
    away, blurred); such faces still count for faces, attention and tracks. ``assessed`` is
    ``None`` for rows recorded without a gate.
    """

    frame = models.ForeignKey(FrameResult, on_delete=models.CASCADE, related_name="faces")
    track = models.ForeignKey(
        Track, null=True, blank=True, on_delete=models.SET_NULL, related_name="observations"
    )
    index = models.PositiveSmallIntegerField(
        help_text="Position of the face in the frame's result."
    )
    box_x = models.FloatField(help_text="Left edge, fraction of frame width (0..1).")
    box_y = models.FloatField(help_text="Top edge, fraction of frame height (0..1).")
    box_w = models.FloatField(help_text="Width, fraction of frame width (0..1).")
    box_h = models.FloatField(help_text="Height, fraction of frame height (0..1).")
    score = models.FloatField(null=True, blank=True, help_text="Detector confidence (0..1).")
    # NULL, not "", means "no expression computed" (attention-only sessions): the all-or-none
    # constraint below tests it together with the other expression columns.
    label = models.CharField(  # noqa: DJ001
        max_length=16, choices=EXPRESSION_CHOICES, null=True, blank=True
    )
    confidence = models.FloatField(
        null=True, blank=True, help_text="Probability of the label (0..1)."
    )
    probabilities = models.JSONField(
        null=True, blank=True, help_text="7 probabilities, FER2013 order, summing to 1."
    )
    smoothed_label = models.CharField(  # noqa: DJ001
        max_length=16, choices=EXPRESSION_CHOICES, null=True, blank=True
    )
    smoothed_probabilities = models.JSONField(
        null=True, blank=True, help_text="Track's EMA of the probabilities after this frame."
    )
    yaw_deg = models.FloatField(
        null=True, blank=True, help_text="Head yaw, degrees; 0 = facing the camera."
    )
    pitch_deg = models.FloatField(
        null=True, blank=True, help_text="Head pitch, degrees; 0 = facing the camera."
    )
    attentive = models.BooleanField(
        null=True, blank=True, help_text="Facing the screen (head pose within the limits)."
    )
    assessed = models.BooleanField(
        null=True,
        blank=True,
        help_text="Passed the face-quality gate (big, frontal, sharp enough to read).",
    )
    quality_issue = models.CharField(  # noqa: DJ001 - NULL = assessed, tested with assessed
        max_length=16,
        choices=QUALITY_ISSUE_CHOICES,
        null=True,
        blank=True,
        help_text="Why the expression was not read (face-quality gate).",
    )

    class Meta:
        ordering = ["frame", "index"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "index"], name="classroom_face_unique_index"),
            models.CheckConstraint(
                condition=Q(box_x__gte=0, box_x__lte=1, box_y__gte=0, box_y__lte=1)
                & Q(box_w__gte=0, box_w__lte=1, box_h__gte=0, box_h__lte=1),
                name="classroom_face_box_normalised",
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="classroom_face_confidence_range",
            ),
            models.CheckConstraint(
                condition=Q(label__isnull=True, confidence__isnull=True, probabilities__isnull=True)
                | Q(label__isnull=False, confidence__isnull=False, probabilities__isnull=False),
                name="classroom_face_expression_all_or_none",
            ),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | Q(score__gte=0, score__lte=1),
                name="classroom_face_score_range",
            ),
            models.CheckConstraint(
                condition=Q(label__isnull=True) | Q(label__in=list(EXPRESSIONS)),
                name="classroom_face_label_valid",
            ),
            models.CheckConstraint(
                condition=Q(smoothed_label__isnull=True) | Q(smoothed_label__in=list(EXPRESSIONS)),
                name="classroom_face_smoothed_label_valid",
            ),
            models.CheckConstraint(
                condition=Q(assessed=False, quality_issue__in=list(QUALITY_ISSUES))
                & Q(label__isnull=True, smoothed_label__isnull=True)
                | Q(assessed__isnull=True, quality_issue__isnull=True)
                | Q(assessed=True, quality_issue__isnull=True),
                name="classroom_face_unassessed_has_issue_and_no_expression",
            ),
        ]

    def __str__(self) -> str:
        if self.assessed is False:
            return f"face {self.index} of frame {self.frame_id}: not read ({self.quality_issue})"
        if self.label is None:  # attention-only session
            return f"face {self.index} of frame {self.frame_id}: no expression"
        return f"face {self.index} of frame {self.frame_id}: {self.label} ({self.confidence:.2f})"


class TimelineBucket(models.Model):
    """Running totals of one participant's frames in one 5-s bucket of the session timeline.

    Bucket ``index`` k covers arrival times ``[started_at + k*5 s, started_at + (k+1)*5 s)``
    (``choices.TIMELINE_BUCKET_S``). Incremented (``F()`` updates) by
    ``services.record_frame_result`` in the same transaction as the frame, so the board reads a
    few rows instead of every face of the lesson. Expression counts use the smoothed labels.
    """

    participant = models.ForeignKey(
        Participant, on_delete=models.CASCADE, related_name="timeline_buckets"
    )
    index = models.PositiveIntegerField(help_text="Bucket number from the session start.")
    frames = models.PositiveIntegerField(default=0)
    face_sum = models.PositiveIntegerField(default=0, help_text="Faces summed over the frames.")
    pose_faces = models.PositiveIntegerField(default=0, help_text="Faces with a head pose.")
    attentive_faces = models.PositiveIntegerField(default=0, help_text="Faces facing the screen.")
    angry = models.PositiveIntegerField(default=0)
    disgust = models.PositiveIntegerField(default=0)
    fear = models.PositiveIntegerField(default=0)
    happy = models.PositiveIntegerField(default=0)
    sad = models.PositiveIntegerField(default=0)
    surprise = models.PositiveIntegerField(default=0)
    neutral = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["participant", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["participant", "index"], name="classroom_bucket_unique_index"
            ),
            models.CheckConstraint(
                condition=Q(attentive_faces__lte=models.F("pose_faces")),
                name="classroom_bucket_attentive_le_pose",
            ),
        ]

    def __str__(self) -> str:
        return f"bucket {self.index} of participant {self.participant_id}"


class SessionReport(models.Model):
    """The built report of an ended session (upserted by the report task, at-least-once)."""

    session = models.OneToOneField(ClassSession, on_delete=models.CASCADE, related_name="report")
    built_at = models.DateTimeField(default=timezone.now)
    summary = models.JSONField(help_text="classroom.selectors.session_report() output.")

    class Meta:
        ordering = ["-built_at"]

    def __str__(self) -> str:
        return f"report of {self.session_id} built {self.built_at:%Y-%m-%d %H:%M}"


class AuditEvent(models.Model):
    """One append-only audit record: who did what to which session, and when. No frame data:
    only the actor, the action, the session and a few ids or counts in ``detail``.

    Rows are written by ``classroom.services.audit.record_event`` and never changed: ``save``
    refuses an existing row and ``delete`` refuses always (the admin shows them read-only).
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        "classroom.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(
        max_length=150, help_text="The actor's username when it happened ('system' for tasks)."
    )
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    session = models.ForeignKey(
        ClassSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    session_title = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True, help_text="Ids and counts, never frames.")

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=AuditAction.values), name="classroom_audit_action_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action}"

    def save(self, *args, **kwargs):
        """Insert only.

        Raises:
            ValueError: the row exists already (audit records are append-only).
        """
        if self.pk is not None:
            raise ValueError("audit records are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        """Never.

        Raises:
            ValueError: always (audit records are append-only).
        """
        raise ValueError("audit records are append-only")
