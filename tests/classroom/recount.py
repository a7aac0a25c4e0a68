"""A test oracle: the session timeline recounted from every frame and face row.

On consistent data it equals the ``timeline`` of ``selectors.dashboard_snapshot`` and
``selectors.session_report``, which read the ``TimelineBucket`` running totals instead.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from classroom import aggregates, selectors
from classroom.choices import EXPRESSIONS, TIMELINE_BUCKET_S
from classroom.models import ClassSession


def timeline_recount(session: ClassSession, *, now: datetime | None = None) -> list[dict]:
    """The timeline from the per-frame rows (two queries over the whole session).

    Returns:
        ``aggregates.bucket_timeline`` points; ``[]`` if the session never started.
    """
    now = now or timezone.now()
    if session.started_at is None:
        return []
    return aggregates.timeline(
        selectors._frame_rows(session),
        selectors._face_rows(session),
        session.started_at,
        selectors._timeline_end(session, now),
        TIMELINE_BUCKET_S,
        EXPRESSIONS if selectors.expressions_on(session) else (),
    )
