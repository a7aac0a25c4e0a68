"""Timeline buckets: per-participant running totals of 5-s buckets (``TimelineBucket``).

Kept in the same transaction as each recorded frame, so that a board refresh reads a few bucket
rows instead of every face of the lesson; ``aggregates.buckets_from_rows`` recounts the same
totals from the per-frame rows (tests check that both agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db.models import F

from classroom import aggregates
from classroom.choices import EXPRESSIONS, TIMELINE_BUCKET_S
from classroom.models import ClassSession, FaceObservation, TimelineBucket


def add_frame_to_timeline(
    participant_id: int,
    session: ClassSession,
    observations: Sequence[FaceObservation],
    received_at: datetime,
) -> int:
    """Add one frame to the participant's ``TimelineBucket`` of its arrival time.

    Call with the participant row locked (``results.record_frame_result`` does): the row of a
    bucket is created once and then moved with ``F()`` increments, and only this participant's
    frames write this participant's buckets, so the two steps cannot race.

    ``pose_faces`` counts faces whose ``attentive`` is not None (a head pose was estimated),
    ``attentive_faces`` those with ``attentive`` true; the expression columns count SMOOTHED
    labels (no expression column moves in attention-only sessions).

    Args:
        participant_id: ``Participant.pk``.
        session: the participant's session (its ``started_at`` is bucket 0's start).
        observations: the frame's faces (saved or not; ``attentive`` and ``smoothed_label`` set).
        received_at: the frame's arrival time (aware).

    Returns:
        The bucket index (``aggregates.bucket_index``, ``TIMELINE_BUCKET_S`` wide).
    """
    index = aggregates.bucket_index(received_at, session.started_at, TIMELINE_BUCKET_S)
    counts = frame_counts(observations)
    updated = TimelineBucket.objects.filter(participant_id=participant_id, index=index).update(
        **{name: F(name) + value for name, value in counts.items()}
    )
    if not updated:
        TimelineBucket.objects.create(participant_id=participant_id, index=index, **counts)
    return index


def frame_counts(observations: Sequence[FaceObservation]) -> dict[str, int]:
    """What one frame adds to its ``TimelineBucket`` (:func:`add_frame_to_timeline`).

    Returns:
        ``{"frames": 1, "face_sum", "pose_faces", "attentive_faces"}`` plus each expression
        (smoothed labels) that occurs, with its count of faces.
    """
    counts = {
        "frames": 1,
        "face_sum": len(observations),
        "pose_faces": sum(o.attentive is not None for o in observations),
        "attentive_faces": sum(o.attentive is True for o in observations),
    }
    for label in EXPRESSIONS:
        count = sum(o.smoothed_label == label for o in observations)
        if count:
            counts[label] = count
    return counts
