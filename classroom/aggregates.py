"""Pure aggregation of analysis results: expression mix, live window counts, timeline buckets.

No ORM and no I/O: the selectors fetch narrow rows (:class:`FrameRow`, :class:`FaceRow`) and
these functions turn them into the numbers of the dashboard and of the report, so the maths is
tested without a database.

All datetimes are timezone-aware; durations are seconds unless a name says ``_ms``. The label
order, window and bucket sizes are passed in (``classroom.choices`` holds the app's values;
this module sits beside it in the lowest layer and imports no app module).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

#: Shares are rounded to this many decimals (keeps dashboard messages small; 1e-4 is far below
#: what a chart can show).
SHARE_DECIMALS = 4

#: Upper bound on timeline points (4 h of 5-s buckets); older buckets are dropped first.
MAX_TIMELINE_POINTS = 2880


class FrameRow(NamedTuple):
    """One analysed frame, as the aggregates need it."""

    participant_id: int
    received_at: datetime
    analysed_at: datetime
    face_count: int


class FaceRow(NamedTuple):
    """One observed face: the arrival time of its frame and its expression label."""

    received_at: datetime
    label: str


def expression_mix(labels: Iterable[str], order: Sequence[str] = ()) -> dict[str, float]:
    """Share of each expression label among faces.

    Args:
        labels: one label per observed face.
        order: labels always listed first, in this order, even when absent (the app passes
            ``choices.EXPRESSIONS``, FER2013 order).

    Returns:
        ``{}`` when there are no faces; otherwise the labels of ``order`` (0.0 when absent),
        then any other observed label in first-seen order, mapped to its share in [0, 1],
        rounded to ``SHARE_DECIMALS``. Shares sum to 1 up to that rounding.
    """
    counts = Counter(labels)
    total = sum(counts.values())
    if total == 0:
        return {}
    keys = list(order) + [label for label in counts if label not in order]
    return {label: round(counts.get(label, 0) / total, SHARE_DECIMALS) for label in keys}


def latest_per_participant(frames: Iterable[FrameRow]) -> dict[int, FrameRow]:
    """The most recently received frame of each participant.

    Args:
        frames: analysed frames, in any order.

    Returns:
        ``{participant_id: FrameRow}``; ties on ``received_at`` keep the later-analysed frame.
    """
    latest: dict[int, FrameRow] = {}
    for row in frames:
        current = latest.get(row.participant_id)
        if current is None or (row.received_at, row.analysed_at) > (
            current.received_at,
            current.analysed_at,
        ):
            latest[row.participant_id] = row
    return latest


def live_counts(frames: Iterable[FrameRow], now: datetime, window_s: float) -> tuple[int, int]:
    """Faces seen now and participants seen now.

    A participant is "seen now" when one of their frames arrived in ``(now - window_s, now]``;
    their contribution to the face count is the face count of their latest such frame.

    Args:
        frames: analysed frames, in any order.
        now: the reference time (aware).
        window_s: window length, seconds (CONTRACTS.md: 10).

    Returns:
        ``(faces_now, participants)``, both >= 0.
    """
    start = now - timedelta(seconds=window_s)
    recent = [row for row in frames if start < row.received_at <= now]
    latest = latest_per_participant(recent)
    return sum(row.face_count for row in latest.values()), len(latest)


def window_mix(
    faces: Iterable[FaceRow], now: datetime, window_s: float, order: Sequence[str] = ()
) -> dict[str, float]:
    """Expression mix over faces whose frame arrived in ``(now - window_s, now]``.

    Returns:
        See :func:`expression_mix`.
    """
    start = now - timedelta(seconds=window_s)
    return expression_mix((face.label for face in faces if start < face.received_at <= now), order)


def latest_lag_ms(frames: Iterable[FrameRow]) -> float | None:
    """Arrival-to-analysis latency of the most recently analysed frame, milliseconds.

    Returns:
        ``None`` when there are no frames, else ``analysed_at - received_at`` in ms, rounded
        to 0.1 ms (may be slightly negative if clocks of two servers disagree).
    """
    latest = max(frames, key=lambda row: row.analysed_at, default=None)
    if latest is None:
        return None
    return round((latest.analysed_at - latest.received_at).total_seconds() * 1000.0, 1)


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def timeline(
    frames: Iterable[FrameRow],
    faces: Iterable[FaceRow],
    start: datetime,
    end: datetime,
    bucket_s: float,
    order: Sequence[str] = (),
    max_points: int = MAX_TIMELINE_POINTS,
) -> list[dict]:
    """Session timeline, one point per bucket from ``start`` to ``end`` (gaps filled).

    Bucket ``k`` covers ``[start + k*bucket_s, start + (k+1)*bucket_s)`` by frame arrival time;
    rows outside ``[start, end]`` are ignored. The bucket containing ``end`` is still filling:
    while it has no frame yet it is left out, so a live chart never dips to 0 faces merely
    because the newest bucket has just begun.

    ``faces`` of a bucket: for each participant with frames in the bucket, the mean face count
    of those frames rounded half up, summed over participants. This is "faces visible", which
    does not grow with the frame rate and ignores a single missed or spurious detection.

    Args:
        frames: analysed frames.
        faces: observed faces.
        start: first bucket's start (aware), normally the session's ``started_at``.
        end: the last bucket is the one containing ``end`` (aware); ``end < start`` gives ``[]``.
        bucket_s: bucket width, seconds (> 0; CONTRACTS.md: 5).
        order: label order of each point's mix, see :func:`expression_mix`.
        max_points: keep at most this many latest buckets.

    Returns:
        ``[{"t": ISO 8601 bucket start, "faces": int >= 0, "mix": expression_mix(...)}, ...]``
        in time order.

    Raises:
        ValueError: if ``bucket_s`` <= 0.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be > 0")
    if end < start:
        return []
    n_buckets = int((end - start).total_seconds() // bucket_s) + 1
    first = max(0, n_buckets - max_points)

    def bucket_of(when: datetime) -> int | None:
        if when < start or when > end:
            return None
        k = int((when - start).total_seconds() // bucket_s)
        return k if first <= k < n_buckets else None

    per_participant: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in frames:
        k = bucket_of(row.received_at)
        if k is not None:
            per_participant[k][row.participant_id].append(row.face_count)
    labels: dict[int, list[str]] = defaultdict(list)
    for face in faces:
        k = bucket_of(face.received_at)
        if k is not None:
            labels[k].append(face.label)

    points = []
    for k in range(first, n_buckets):
        counts = per_participant.get(k, {})
        if k == n_buckets - 1 and not counts and k > first:
            break
        visible = sum(_round_half_up(sum(c) / len(c)) for c in counts.values())
        points.append(
            {
                "t": (start + timedelta(seconds=k * bucket_s)).isoformat(),
                "faces": visible,
                "mix": expression_mix(labels.get(k, ()), order),
            }
        )
    return points


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, or ``None`` for no values."""
    values = list(values)
    return sum(values) / len(values) if values else None


def percentile(values: Iterable[float], q: float) -> float | None:
    """Percentile by linear interpolation between closest ranks (numpy's default method).

    Args:
        values: samples.
        q: percentile in [0, 100].

    Returns:
        ``None`` for no values, else the interpolated value.

    Raises:
        ValueError: if ``q`` is outside [0, 100].
    """
    if not 0 <= q <= 100:
        raise ValueError("q must be in [0, 100]")
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
