"""All writes of the classroom app, and the only place that broadcasts or queues tasks.

One module per use case (the layout of Zulip's ``zerver/actions/``):

================  ==============================================================================
``sessions``      create a draft session, start it, end it (queues the report on commit)
``joining``       a student joins with a display name and explicit consent; leaving and logging
                  out close the sockets of that student or user
``intake``        one binary frame: validate (``images``, ``rate_limit``) and queue it by name
``device``        on-device sessions: check a numbers message; record a batch of them
``results``       record an analysed frame (``tracks``, ``timeline``) or a dropped one
``reports``       build the stored report of a session
``audit``         the append-only audit log (report views and exports, start, end, ...)
``retention``     delete per-frame and per-face rows of old sessions, keep their reports
``withdrawal``    a student withdraws consent: their rows go, the session's figures follow
``errors``        the exceptions callers catch
================  ==============================================================================

Called by views, consumers, tasks, management commands and the inference worker (which may
import only this package of ``classroom``: an import-linter contract). Broadcasts and task sends
happen in ``transaction.on_commit``, so no one is told about rows that are not committed.

Frames are never stored or logged: ``accept_frame`` validates the bytes and hands them to the
broker; only derived numbers (counts, boxes, probabilities, timings) reach the database.
"""

from classroom.services.audit import record_event
from classroom.services.device import (
    DeviceItem,
    StreamSession,
    check_device_message,
    peek_device_seq,
    record_device_batch,
)
from classroom.services.errors import FrameRejected, JoinError, SessionStateError
from classroom.services.intake import FrameAccepted, accept_frame
from classroom.services.joining import (
    PARTICIPANT_SESSION_KEY,
    join_session,
    leave_session,
    user_logged_out,
)
from classroom.services.rate_limit import FrameRateLimiter, frame_rate_limiter
from classroom.services.reports import build_session_report
from classroom.services.results import record_frame_dropped, record_frame_result
from classroom.services.retention import apply_retention
from classroom.services.sessions import create_session, end_session, start_session
from classroom.services.withdrawal import withdraw_participant

__all__ = [
    "PARTICIPANT_SESSION_KEY",
    "FrameAccepted",
    "FrameRateLimiter",
    "FrameRejected",
    "JoinError",
    "SessionStateError",
    "DeviceItem",
    "StreamSession",
    "accept_frame",
    "check_device_message",
    "peek_device_seq",
    "record_device_batch",
    "apply_retention",
    "build_session_report",
    "create_session",
    "end_session",
    "leave_session",
    "record_event",
    "user_logged_out",
    "withdraw_participant",
    "frame_rate_limiter",
    "join_session",
    "record_frame_dropped",
    "record_frame_result",
    "start_session",
]
