"""Deleting what was derived from a participant's frames (retention and withdrawal share it)."""

from __future__ import annotations

from django.db.models import QuerySet

from classroom.models import FaceObservation, FrameResult, Participant, TimelineBucket, Track


def delete_frame_rows(participants: QuerySet[Participant]) -> dict[str, int]:
    """Delete the per-frame and per-face rows of these participants: their ``FaceObservation``,
    ``FrameResult``, ``Track`` and ``TimelineBucket`` rows. Participants themselves (names,
    consent, frame counters) stay. Call it inside the caller's transaction.

    Args:
        participants: the participants (any queryset of ``Participant``).

    Returns:
        ``{"faces", "frames", "tracks", "buckets"}``: rows deleted, each ``>= 0``.
    """
    return {
        "faces": FaceObservation.objects.filter(frame__participant__in=participants).delete()[0],
        "frames": FrameResult.objects.filter(participant__in=participants).delete()[0],
        "tracks": Track.objects.filter(participant__in=participants).delete()[0],
        "buckets": TimelineBucket.objects.filter(participant__in=participants).delete()[0],
    }
