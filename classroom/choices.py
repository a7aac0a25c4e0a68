"""Enumerations and constants shared across the classroom app (no Django models, no ORM)."""

from django.db import models

#: Expression labels in FER2013 order (angry, disgust, fear, happy, sad, surprise, neutral).
#: Mirrors ``ml.labels.EMOTIONS``; classroom must not import ``ml``, so the tuple is repeated
#: here and the worker's results are validated against it.
EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


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

    ``attention`` is the privacy-first mode (issue #4, item 4): faces are counted and head pose
    is estimated, but no expression is computed, stored or shown.
    """

    EXPRESSION = "expression", "Expressions and attention"
    ATTENTION = "attention", "Attention only (no expressions)"


class StreamSource(models.TextChoices):
    """Kind of video a student streams; selects the face-detection settings in the worker."""

    WEBCAM = "webcam", "Webcam"
    SCREEN = "screen", "Screen share"


class Expression(models.TextChoices):
    """Facial expression labels, FER2013 order."""

    ANGRY = "angry", "Angry"
    DISGUST = "disgust", "Disgust"
    FEAR = "fear", "Fear"
    HAPPY = "happy", "Happy"
    SAD = "sad", "Sad"
    SURPRISE = "surprise", "Surprise"
    NEUTRAL = "neutral", "Neutral"


class FrameErrorCode(models.TextChoices):
    """Codes of the ``{"type": "error"}`` replies on /ws/stream/ (see CONTRACTS.md)."""

    SESSION_NOT_LIVE = "session_not_live", "The session is not live"
    NO_CONSENT = "no_consent", "Consent has not been given"
    TOO_LARGE = "too_large", "Frame too large"
    BAD_FORMAT = "bad_format", "Not a JPEG, PNG or WebP image"
    UNDECODABLE = "undecodable", "The image cannot be decoded"
    TOO_MANY_PIXELS = "too_many_pixels", "Decoded image too large"
    RATE_LIMITED = "rate_limited", "Frames sent too fast"
    BAD_HEADER = "bad_header", "Malformed frame header"
    TEXT_NOT_SUPPORTED = "text_not_supported", "Text messages are not supported"


class JoinErrorCode(models.TextChoices):
    """Reasons a student cannot join a session."""

    UNKNOWN_CODE = "unknown_code", "No session has this join code"
    SESSION_ENDED = "session_ended", "This session has ended"
    CONSENT_REQUIRED = "consent_required", "Consent is required to join"
    BAD_NAME = "bad_name", "Display name must be 1 to 40 characters"


#: Unambiguous join-code alphabet: no 0/O, 1/I/L (read aloud or copied from a projector).
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 6

#: Frame interval bounds in seconds (issue #2: default 1 s).
MIN_FRAME_INTERVAL_S = 0.2
MAX_FRAME_INTERVAL_S = 10.0
DEFAULT_FRAME_INTERVAL_S = 1.0

DISPLAY_NAME_MAX_LENGTH = 40
TITLE_MAX_LENGTH = 200

#: Dashboard "now" window and timeline bucket width, seconds (CONTRACTS.md, session.update).
LIVE_WINDOW_S = 10.0
TIMELINE_BUCKET_S = 5.0
