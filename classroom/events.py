"""Names and shapes of channel-layer events and WebSocket JSON messages (pure, no I/O).

Channel-layer event types are dotted; Channels calls the consumer method named after the type
with dots replaced by underscores (``session.update`` -> ``session_update``). The binary frame
message a student sends is defined in :mod:`contracts.frames`.
"""

from __future__ import annotations

#: Dashboard refresh notification, sent to ``realtime.session_group(session_id)``.
SESSION_UPDATE = "session.update"
#: Sent to each participant's group when the teacher ends the session.
SESSION_ENDED = "session.ended"
#: A frame of this participant was analysed, sent to ``realtime.participant_group(id)``.
FRAME_RESULT = "frame.result"
#: An accepted frame of this participant will never be analysed (``"seq"``, ``"reason"``: one of
#: ``contracts.FRAME_DROP_REASONS``), sent to ``realtime.participant_group(id)``.
FRAME_DROPPED = "frame.dropped"
#: The student left (``POST /student/leave/``): their stream sockets close.
PARTICIPANT_LEFT = "participant.left"
#: A newer stream socket of the same participant connected (``"keep"``: its channel name): the
#: older sockets close, so a participant streams through one socket at a time.
STREAM_REPLACED = "stream.replaced"
#: The user logged out: their dashboard sockets close (``realtime.user_group(id)``).
USER_LOGGED_OUT = "user.logged_out"

#: WebSocket close codes (4000-4999 are application-defined, RFC 6455 section 7.4.2).
CLOSE_SESSION_ENDED = 4000
CLOSE_LEFT = 4001
CLOSE_REPLACED = 4009
CLOSE_BAD_REQUEST = 4400
CLOSE_LOGGED_OUT = 4401
CLOSE_FORBIDDEN = 4403


def ack_message(seq: int) -> dict:
    """``{"type": "ack", "seq": n}``: frame accepted and queued."""
    return {"type": "ack", "seq": seq}


def error_message(seq: int | None, code: str, message: str) -> dict:
    """``{"type": "error", ...}``: frame rejected; the socket stays open."""
    return {"type": "error", "seq": seq, "code": code, "message": message}


def result_message(seq: int, faces: int) -> dict:
    """``{"type": "result", "seq": n, "faces": k}``: frame analysed."""
    return {"type": "result", "seq": seq, "faces": faces}


def dropped_message(seq: int, reason: str) -> dict:
    """``{"type": "dropped", "seq": n, "reason": r}``: an acknowledged frame was not analysed."""
    return {"type": "dropped", "seq": seq, "reason": reason}


def participant_left_message() -> dict:
    """``{"type": "participant.left"}``, sent before closing with ``CLOSE_LEFT``."""
    return {"type": PARTICIPANT_LEFT}


def session_ended_message() -> dict:
    """``{"type": "session.ended"}``, sent before closing with ``CLOSE_SESSION_ENDED``."""
    return {"type": SESSION_ENDED}
