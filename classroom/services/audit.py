"""The audit log: append-only records of who viewed or exported which report, who started or
ended a session, withdrawals and retention deletions (``classroom.models.AuditEvent``)."""

from __future__ import annotations

import logging
from typing import Any

from classroom.choices import AuditAction
from classroom.models import AuditEvent, ClassSession

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
"""``actor_name`` of records written by tasks (retention) rather than a person."""


def record_event(
    action: str,
    *,
    actor=None,
    session: ClassSession | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit record.

    Args:
        action: a :class:`~classroom.choices.AuditAction` value.
        actor: the acting user, or ``None`` for the system (a task).
        session: the session concerned, if any (its title is kept too, so the record outlives
            the session).
        detail: JSON-able ids and counts (never frames, never expressions).

    Returns:
        The saved record.

    Raises:
        ValueError: ``action`` is not an ``AuditAction`` value.
    """
    if action not in AuditAction.values:
        raise ValueError(f"action must be one of {AuditAction.values}, got {action!r}")
    event = AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) is not None else None,
        actor_name=getattr(actor, "username", None) or SYSTEM_ACTOR,
        action=action,
        session=session,
        session_title=session.title if session is not None else "",
        detail=dict(detail or {}),
    )
    logger.info("audit: %s %s session %s", event.actor_name, action, getattr(session, "pk", None))
    return event
