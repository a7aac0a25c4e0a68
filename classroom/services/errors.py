"""Errors that the services raise to their callers (views, consumers, tasks)."""

from __future__ import annotations

from classroom.choices import FrameErrorCode, JoinErrorCode


class JoinError(Exception):
    """A student cannot join; ``code`` is a :class:`~classroom.choices.JoinErrorCode` value."""

    def __init__(self, code: str, message: str | None = None):
        self.code = str(code)
        self.message = message or JoinErrorCode(code).label
        super().__init__(self.message)


class SessionStateError(ValueError):
    """A session transition that its status does not allow (e.g. starting an ended session)."""


class FrameRejected(Exception):
    """A frame was refused at intake; the socket stays open.

    Attributes:
        code: a :class:`~classroom.choices.FrameErrorCode` value.
        message: human-readable reason (never contains frame data).
        seq: the frame's sequence number, or ``None`` when the header could not be read.
    """

    def __init__(self, code: str, message: str | None = None, seq: int | None = None):
        self.code = str(code)
        self.message = message or FrameErrorCode(code).label
        self.seq = seq
        super().__init__(f"{self.code}: {self.message}")
