"""Joining a session: a student gives a display name and explicit consent."""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from classroom import realtime, selectors
from classroom.choices import DISPLAY_NAME_MAX_LENGTH, JoinErrorCode, SessionStatus
from classroom.models import Participant
from classroom.services.errors import JoinError

logger = logging.getLogger(__name__)

#: Key of the participant id in the student's Django session (set by the join view, read by
#: ``StudentStreamConsumer`` from ``scope["session"]``).
PARTICIPANT_SESSION_KEY = "participant_id"


def _clean_display_name(display_name) -> str:
    name = " ".join(str(display_name or "").split())
    if not name or len(name) > DISPLAY_NAME_MAX_LENGTH or not name.isprintable():
        raise JoinError(JoinErrorCode.BAD_NAME)
    return name


def join_session(*, code: str, display_name: str, consent: bool) -> Participant:
    """Add a student to a session (draft or live) after explicit consent.

    The caller (the join view) stores ``participant.pk`` in the student's Django session under
    :data:`PARTICIPANT_SESSION_KEY`.

    Args:
        code: join code; case, spaces and dashes are ignored.
        display_name: 1 to 40 printable characters after collapsing whitespace.
        consent: whether the student ticked the consent box; must be true.

    Returns:
        The new ``Participant`` with ``consent_given_at`` set to now.

    Raises:
        JoinError: ``code`` is ``"unknown_code"`` (no session has the code, or it has ended:
            the same answer, so that a guesser cannot tell them apart), ``"bad_name"``,
            ``"consent_required"`` or ``"session_full"`` (``ENGAGEMENT_MAX_PARTICIPANTS``
            participants already joined), checked in that order.
    """
    session = selectors.session_by_code(code or "")
    if session is None or session.status == SessionStatus.ENDED:
        raise JoinError(JoinErrorCode.UNKNOWN_CODE)
    name = _clean_display_name(display_name)
    if consent is not True:
        raise JoinError(JoinErrorCode.CONSENT_REQUIRED)
    if Participant.objects.filter(session=session).count() >= settings.ENGAGEMENT_MAX_PARTICIPANTS:
        raise JoinError(JoinErrorCode.SESSION_FULL)
    now = timezone.now()
    participant = Participant.objects.create(
        session=session, display_name=name, consent_given_at=now, joined_at=now
    )
    logger.info("participant %s joined session %s", participant.pk, session.pk)
    return participant


def leave_session(participant_id: int) -> None:
    """A student leaves from their browser: their open stream sockets are closed now.

    The caller (the leave view) forgets the participant in the Django session, so no new socket
    opens as them; this closes the ones already open (close code 4001), which would otherwise
    keep sending frames as the participant.

    Args:
        participant_id: ``Participant.pk``.
    """
    realtime.notify_participant_left(participant_id)
    logger.info("participant %s left", participant_id)


def user_logged_out(user_id: int) -> None:
    """A user logged out: their open dashboard sockets are closed now (close code 4401).

    Args:
        user_id: ``User.pk``.
    """
    realtime.notify_user_logged_out(user_id)
