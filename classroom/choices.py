"""Enumerations and constants of the classroom app (no Django models, no ORM).

What the worker must agree on (expression labels, stream sources, analysis modes) comes from
:mod:`contracts`; the Django choices here add the labels that forms and the admin show.
"""

from django.db import models

import contracts
from contracts import EXPRESSIONS

#: ``(value, label)`` choices of the expression fields, FER2013 order.
EXPRESSION_CHOICES: list[tuple[str, str]] = [(label, label.capitalize()) for label in EXPRESSIONS]


#: Human-readable reason per face-quality issue, :data:`contracts.QUALITY_ISSUE_LABELS`.
QUALITY_ISSUE_LABELS: dict[str, str] = contracts.QUALITY_ISSUE_LABELS
#: The issue values, :data:`contracts.QUALITY_ISSUES`.
QUALITY_ISSUES: tuple[str, ...] = contracts.QUALITY_ISSUES
#: ``(value, label)`` choices of ``FaceObservation.quality_issue``.
QUALITY_ISSUE_CHOICES: list[tuple[str, str]] = [
    (issue, QUALITY_ISSUE_LABELS[issue]) for issue in contracts.QUALITY_ISSUES
]


class UserRole(models.TextChoices):
    """Account roles. Students have no account; staff and superusers count as admins too."""

    TEACHER = "teacher", "Teacher"
    ADMIN = "admin", "Admin"


class SessionStatus(models.TextChoices):
    """Life cycle of a class session: draft -> live -> ended (draft -> ended cancels)."""

    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    ENDED = "ended", "Ended"


class AnalysisMode(models.TextChoices):
    """What a session computes from each face (chosen by the teacher when creating it).

    ``attention`` is the privacy-first mode: faces are counted and head pose is estimated, but
    no expression is computed, stored or shown. Values: :class:`contracts.AnalysisMode`.
    """

    EXPRESSION = contracts.AnalysisMode.EXPRESSION.value, "Expressions and attention"
    ATTENTION = contracts.AnalysisMode.ATTENTION.value, "Attention only (no expressions)"


class AnalysisSite(models.TextChoices):
    """Where a session's faces are analysed (chosen by the teacher when creating it).

    ``on-device``: the student's browser detects and classifies, and only numbers leave it
    (:mod:`contracts.device`). Values: :class:`contracts.AnalysisSite`.
    """

    SERVER = contracts.AnalysisSite.SERVER.value, "On the school's server"
    ON_DEVICE = contracts.AnalysisSite.ON_DEVICE.value, "On each student's device"


class StreamSource(models.TextChoices):
    """Kind of video a student streams; selects the face-detection settings in the worker.

    Values: :class:`contracts.StreamSource`.
    """

    WEBCAM = contracts.StreamSource.WEBCAM.value, "Webcam"
    SCREEN = contracts.StreamSource.SCREEN.value, "Screen share"


class FrameErrorCode(models.TextChoices):
    """Codes of the ``{"type": "error"}`` replies on /ws/stream/ (``events.error_message``)."""

    SESSION_NOT_LIVE = "session_not_live", "The session is not live"
    NO_CONSENT = "no_consent", "Consent has not been given"
    TOO_LARGE = "too_large", "Frame too large"
    BAD_FORMAT = "bad_format", "Not a JPEG, PNG or WebP image"
    UNDECODABLE = "undecodable", "The image cannot be decoded"
    TOO_MANY_PIXELS = "too_many_pixels", "Decoded image too large"
    RATE_LIMITED = "rate_limited", "Frames sent too fast"
    BAD_HEADER = "bad_header", "Malformed frame header"
    TEXT_NOT_SUPPORTED = "text_not_supported", "Text messages are not supported"
    PICTURES_NOT_ACCEPTED = "pictures_not_accepted", "This session analyses on the device"
    BAD_ANALYSIS = "bad_analysis", "Malformed analysis message"


class JoinErrorCode(models.TextChoices):
    """Reasons a student cannot join a session."""

    # An ended session's code gets the same answer as a code that never existed, so a guesser
    # cannot learn which codes exist.
    UNKNOWN_CODE = "unknown_code", "No open session has this join code"
    SESSION_FULL = "session_full", "This session has reached its number of participants"
    CONSENT_REQUIRED = "consent_required", "Consent is required to join"
    BAD_NAME = "bad_name", "Display name must be 1 to 40 characters"


#: Unambiguous join-code alphabet: no 0/O, 1/I/L (read aloud or copied from a projector).
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 6

#: Frame interval bounds and default, seconds.
MIN_FRAME_INTERVAL_S = 0.2
MAX_FRAME_INTERVAL_S = 10.0
DEFAULT_FRAME_INTERVAL_S = 1.0

DISPLAY_NAME_MAX_LENGTH = 40
TITLE_MAX_LENGTH = 200

#: Dashboard "now" window and timeline bucket width, seconds (``session.update`` snapshots).
LIVE_WINDOW_S = 10.0
TIMELINE_BUCKET_S = 5.0


class AuditAction(models.TextChoices):
    """What an audit-log record says happened (``classroom.models.AuditEvent``)."""

    REPORT_VIEWED = "report_viewed", "Report viewed"
    REPORT_EXPORTED = "report_exported", "Report exported"
    SESSION_STARTED = "session_started", "Session started"
    SESSION_ENDED = "session_ended", "Session ended"
    PARTICIPANT_WITHDRAWN = "participant_withdrawn", "Participant withdrawn"
    RETENTION_DELETED = "retention_deleted", "Rows deleted by retention"
