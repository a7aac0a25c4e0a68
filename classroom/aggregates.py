"""Pure aggregation of analysis results: expression mix, attention, live window, timeline.

No ORM and no I/O: the selectors fetch narrow rows (:class:`FrameRow`, :class:`FaceRow`,
:class:`BucketRow`) and these functions turn them into the numbers of the dashboard and of the
report, so the maths is tested without a database.

Two sources feed the timeline and give the same points:

* the per-frame rows (:class:`FrameRow`, :class:`FaceRow`), summed into buckets by
  :func:`buckets_from_rows` - the recount, used by tests and consistency checks;
* the running totals that ``services.record_frame_result`` keeps per participant and 5-s bucket
  (``models.TimelineBucket``, read as :class:`BucketRow`), so that a live refresh reads a few rows
  per participant instead of every face of the lesson.

All datetimes are timezone-aware; durations are seconds unless a name says ``_ms``. The label
order, window and bucket sizes are passed in (``classroom.choices`` holds the app's values;
this module sits beside it in the lowest layer and imports no app module).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

#: Shares are rounded to this many decimals (keeps dashboard messages small; 1e-4 is far below
#: what a chart can show).
SHARE_DECIMALS = 4

#: Upper bound on timeline points (4 h of 5-s buckets); older buckets are dropped first.
MAX_TIMELINE_POINTS = 2880


class FrameRow(NamedTuple):
    """One analysed frame, as the aggregates need it.

    ``seq`` (client frame counter) and ``captured_at`` (client clock, aware) are optional: only
    :func:`latest_seen` uses them.
    """

    participant_id: int
    received_at: datetime
    analysed_at: datetime
    face_count: int
    seq: int | None = None
    captured_at: datetime | None = None


class FaceRow(NamedTuple):
    """One observed face: the arrival time of its frame, a label and whether it faces the screen.

    ``label`` is whichever label the caller aggregates (the board uses the smoothed one) and
    ``None`` when no expression was computed (attention-only sessions); ``attentive`` is ``None``
    when no head pose was estimated. ``participant_id`` is only needed by
    :func:`buckets_from_rows`. ``quality_issue`` is why the face-quality gate did not read the
    face's expression (``"too_small"``, ``"turned_away"``, ``"blurred"``), ``None`` when it
    was read (see :func:`expression_coverage`).
    """

    received_at: datetime
    label: str | None
    attentive: bool | None = None
    participant_id: int | None = None
    quality_issue: str | None = None


class BucketRow(NamedTuple):
    """Running totals of one participant in one timeline bucket (``models.TimelineBucket``).

    Attributes:
        participant_id: the participant.
        index: bucket number k >= 0; covers arrival times ``[start + k*bucket_s,
            start + (k+1)*bucket_s)``.
        frames: analysed frames in the bucket (>= 0; a bucket with 0 frames counts as absent).
        face_sum: faces summed over those frames.
        pose_faces: faces with a head pose estimate.
        attentive_faces: faces facing the screen (<= ``pose_faces``).
        label_counts: ``{label: faces}`` (smoothed labels; empty in attention-only sessions).
    """

    participant_id: int
    index: int
    frames: int
    face_sum: int
    pose_faces: int
    attentive_faces: int
    label_counts: Mapping[str, int]


def mix_from_counts(counts: Mapping[str, int], order: Sequence[str] = ()) -> dict[str, float]:
    """Share of each label given ``{label: number of faces}``.

    Args:
        counts: non-negative face counts per label (``None`` keys are ignored).
        order: labels always listed first, in this order, even when absent (the app passes
            ``choices.EXPRESSIONS``, FER2013 order).

    Returns:
        ``{}`` when the counts sum to 0; otherwise the labels of ``order`` (0.0 when absent),
        then any other counted label in first-seen order, mapped to its share in [0, 1],
        rounded to ``SHARE_DECIMALS``. Shares sum to 1 up to that rounding.
    """
    counts = {label: n for label, n in counts.items() if label is not None and n}
    total = sum(counts.values())
    if total == 0:
        return {}
    keys = list(order) + [label for label in counts if label not in order]
    return {label: round(counts.get(label, 0) / total, SHARE_DECIMALS) for label in keys}


def expression_mix(labels: Iterable[str | None], order: Sequence[str] = ()) -> dict[str, float]:
    """Share of each expression label among faces.

    Args:
        labels: one label per observed face; ``None`` (no expression computed) is skipped.
        order: see :func:`mix_from_counts`.

    Returns:
        See :func:`mix_from_counts`; ``{}`` when there is no labelled face.
    """
    return mix_from_counts(Counter(labels), order)


def expression_coverage(issues: Iterable[str | None], kinds: Sequence[str]) -> dict:
    """How many faces had their expression read, and why the others did not.

    Args:
        issues: one entry per face: ``None`` when its expression was read (or when no gate
            ran), else its face-quality issue.
        kinds: every issue name, in display order (``contracts.QUALITY_ISSUES``); each is listed
            even when 0.

    Returns:
        ``{"faces": M, "read": N, "not_read": {issue: count}}`` with ``N + sum(not_read) == M``;
        an issue outside ``kinds`` is counted under its own name.
    """
    counts = Counter(issues)
    faces = sum(counts.values())
    not_read = {kind: counts.get(kind, 0) for kind in kinds}
    for kind, n in counts.items():
        if kind is not None and kind not in not_read:
            not_read[kind] = n
    return {"faces": faces, "read": counts.get(None, 0), "not_read": not_read}


def window_coverage(
    faces: Iterable[FaceRow], now: datetime, window_s: float, kinds: Sequence[str]
) -> dict:
    """:func:`expression_coverage` of the faces received in the last ``window_s`` seconds."""
    return expression_coverage(
        (face.quality_issue for face in faces if in_window(face.received_at, now, window_s)), kinds
    )


def attention_share(attentive_faces: int, pose_faces: int) -> float | None:
    """Share of faces with a head pose that face the screen.

    Args:
        attentive_faces: faces judged attentive (0 <= attentive_faces <= pose_faces).
        pose_faces: faces with a head pose estimate.

    Returns:
        ``attentive_faces / pose_faces`` in [0, 1] rounded to ``SHARE_DECIMALS``, or ``None``
        when ``pose_faces`` is 0 (no face with a pose: attention is unknown, not 0).
    """
    if pose_faces <= 0:
        return None
    return round(attentive_faces / pose_faces, SHARE_DECIMALS)


def face_attention(faces: Iterable[FaceRow]) -> float | None:
    """:func:`attention_share` over faces (those with ``attentive`` ``None`` are left out)."""
    with_pose = attentive = 0
    for face in faces:
        if face.attentive is not None:
            with_pose += 1
            attentive += bool(face.attentive)
    return attention_share(attentive, with_pose)


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


def in_window(when: datetime, now: datetime, window_s: float) -> bool:
    """Whether ``when`` lies in the live window ``(now - window_s, now]``."""
    return now - timedelta(seconds=window_s) < when <= now


def live_counts(frames: Iterable[FrameRow], now: datetime, window_s: float) -> tuple[int, int]:
    """Faces seen now and participants seen now.

    A participant is "seen now" when one of their frames arrived in ``(now - window_s, now]``;
    their contribution to the face count is the face count of their latest such frame.

    Args:
        frames: analysed frames, in any order.
        now: the reference time (aware).
        window_s: window length, seconds (``choices.LIVE_WINDOW_S``: 10).

    Returns:
        ``(faces_now, participants)``, both >= 0.
    """
    recent = [row for row in frames if in_window(row.received_at, now, window_s)]
    latest = latest_per_participant(recent)
    return sum(row.face_count for row in latest.values()), len(latest)


def window_mix(
    faces: Iterable[FaceRow], now: datetime, window_s: float, order: Sequence[str] = ()
) -> dict[str, float]:
    """Expression mix over faces whose frame arrived in ``(now - window_s, now]``.

    Returns:
        See :func:`expression_mix`.
    """
    return expression_mix(
        (face.label for face in faces if in_window(face.received_at, now, window_s)), order
    )


def window_attention(faces: Iterable[FaceRow], now: datetime, window_s: float) -> float | None:
    """:func:`face_attention` over faces whose frame arrived in ``(now - window_s, now]``."""
    return face_attention(face for face in faces if in_window(face.received_at, now, window_s))


def lag_ms(row: FrameRow) -> float:
    """Arrival-to-analysis latency of one frame, milliseconds (may be slightly negative if the
    clocks of two servers disagree)."""
    return (row.analysed_at - row.received_at).total_seconds() * 1000.0


def latest_lag_ms(frames: Iterable[FrameRow]) -> float | None:
    """Arrival-to-analysis latency of the most recently analysed frame, milliseconds.

    Returns:
        ``None`` when there are no frames, else :func:`lag_ms` of the frame with the latest
        ``analysed_at``, rounded to 0.1 ms.
    """
    latest = max(frames, key=lambda row: row.analysed_at, default=None)
    if latest is None:
        return None
    return round(lag_ms(latest), 1)


def lag_percentile_ms(frames: Iterable[FrameRow], q: float) -> float | None:
    """Percentile ``q`` (0..100) of the frames' :func:`lag_ms`, rounded to 0.1 ms.

    Returns:
        ``None`` when there are no frames; see :func:`percentile` for the method.
    """
    value = percentile((lag_ms(row) for row in frames), q)
    return None if value is None else round(value, 1)


def epoch_ms(when: datetime | None) -> int | None:
    """An aware datetime as integer milliseconds since the Unix epoch (``None`` stays ``None``)."""
    return None if when is None else round(when.timestamp() * 1000)


def latest_seen(frames: Iterable[FrameRow]) -> dict[str, dict]:
    """The latest analysed frame of each participant, for capture-to-board latency.

    Args:
        frames: analysed frames with ``seq`` set (and ``captured_at`` when the client sent it).

    Returns:
        ``{"<participant id>": {"seq": int, "captured_at": int ms since the epoch | None}}``,
        one entry per participant with a frame, the frame chosen as in
        :func:`latest_per_participant`. Keys are strings (JSON object keys).
    """
    return {
        str(pid): {"seq": row.seq, "captured_at": epoch_ms(row.captured_at)}
        for pid, row in latest_per_participant(frames).items()
    }


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def bucket_index(when: datetime, start: datetime | None, bucket_s: float) -> int:
    """Timeline bucket of an arrival time: ``max(0, floor((when - start) / bucket_s))``.

    The one definition of a bucket: ``services`` counts each recorded frame into the
    ``TimelineBucket`` of this index, and :func:`buckets_from_rows` recounts with it. A frame
    that arrives before ``start`` (clocks of two processes that disagree by a little), or in a
    session that has no start time, counts in bucket 0, so no analysed frame is left out of the
    timeline.

    Args:
        when: the frame's arrival time (aware).
        start: bucket 0's start (aware), the session's ``started_at``; ``None``: bucket 0.
        bucket_s: bucket width, seconds (> 0).

    Returns:
        The index, ``>= 0``.

    Raises:
        ValueError: if ``bucket_s`` <= 0.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be > 0")
    if start is None:
        return 0
    return max(0, math.floor((when - start).total_seconds() / bucket_s))


def timeline_length(start: datetime, end: datetime, bucket_s: float) -> int:
    """Number of buckets from ``start`` to the one containing ``end`` (0 if ``end < start``).

    Raises:
        ValueError: if ``bucket_s`` <= 0.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be > 0")
    if end < start:
        return 0
    return int((end - start).total_seconds() // bucket_s) + 1


def buckets_from_rows(
    frames: Iterable[FrameRow], faces: Iterable[FaceRow], start: datetime, bucket_s: float
) -> list[BucketRow]:
    """Sum per-frame rows into per-participant buckets: what ``TimelineBucket`` should hold.

    Args:
        frames: analysed frames.
        faces: observed faces, with ``participant_id`` set; ``label`` as counted in the buckets
            (smoothed; ``None`` in attention-only sessions).
        start: bucket 0's start (aware), the session's ``started_at``.
        bucket_s: bucket width, seconds (> 0).

    Returns:
        One :class:`BucketRow` per (participant, bucket) with at least one frame, sorted by
        (participant, index); buckets by :func:`bucket_index` (rows before ``start`` count in
        bucket 0). Faces whose participant has no frame in that bucket are left out
        (inconsistent input).

    Raises:
        ValueError: if ``bucket_s`` <= 0, or a face has no ``participant_id``.
    """
    if bucket_s <= 0:
        raise ValueError("bucket_s must be > 0")
    totals: dict[tuple[int, int], list] = {}

    def slot(pid: int, k: int) -> list:
        # [frames, face_sum, pose_faces, attentive_faces, Counter of labels]
        return totals.setdefault((pid, k), [0, 0, 0, 0, Counter()])

    for row in frames:
        s = slot(row.participant_id, bucket_index(row.received_at, start, bucket_s))
        s[0] += 1
        s[1] += row.face_count
    for face in faces:
        if face.participant_id is None:
            raise ValueError("faces need a participant_id")
        s = slot(face.participant_id, bucket_index(face.received_at, start, bucket_s))
        if face.attentive is not None:
            s[2] += 1
            s[3] += bool(face.attentive)
        if face.label is not None:
            s[4][face.label] += 1
    return [
        BucketRow(pid, k, s[0], s[1], s[2], s[3], dict(s[4]))
        for (pid, k), s in sorted(totals.items())
        if s[0] > 0
    ]


def bucket_timeline(
    buckets: Iterable[BucketRow],
    start: datetime,
    end: datetime,
    bucket_s: float,
    order: Sequence[str] = (),
    max_points: int = MAX_TIMELINE_POINTS,
) -> list[dict]:
    """Session timeline from per-participant bucket totals, one point per bucket (gaps filled).

    Points run from bucket ``max(0, n - max_points)`` to the bucket containing ``end``
    (``n`` = :func:`timeline_length`); buckets outside that range are ignored, so a caller may
    pass only the buckets it needs (the last three for a 2-point tail). The bucket containing
    ``end`` is still filling: while it has no frame yet it is left out, so a live chart never
    dips to 0 faces merely because the newest bucket has just begun.

    Per point:

    * ``faces``: for each participant with frames in the bucket, its mean face count per frame
      (``face_sum / frames``) rounded half up, summed over participants. This is "faces
      visible", which does not grow with the frame rate and ignores a single missed or
      spurious detection.
    * ``mix``: :func:`mix_from_counts` of the label counts summed over participants (``{}`` when
      no labelled face: an empty bucket, or an attention-only session).
    * ``attention``: :func:`attention_share` of the summed attentive and pose faces.

    Args:
        buckets: per-participant totals (several rows for the same (participant, index) add up).
        start: bucket 0's start (aware), normally the session's ``started_at``.
        end: the last bucket is the one containing ``end`` (aware); ``end < start`` gives ``[]``.
        bucket_s: bucket width, seconds (> 0; ``choices.TIMELINE_BUCKET_S``: 5).
        order: label order of each point's mix, see :func:`mix_from_counts`.
        max_points: keep at most this many latest buckets (>= 1).

    Returns:
        ``[{"t": ISO 8601 bucket start, "faces": int >= 0, "mix": {label: share},
        "attention": float in [0, 1] | None}, ...]`` in time order.

    Raises:
        ValueError: if ``bucket_s`` <= 0.
    """
    n_buckets = timeline_length(start, end, bucket_s)
    if n_buckets == 0:
        return []
    first = max(0, n_buckets - max_points)

    # per bucket: {participant: [frames, face_sum]}, [pose, attentive], Counter of labels
    per_participant: dict[int, dict[int, list[int]]] = defaultdict(dict)
    pose: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    labels: dict[int, Counter] = defaultdict(Counter)
    for b in buckets:
        if not first <= b.index < n_buckets or b.frames <= 0:
            continue
        acc = per_participant[b.index].setdefault(b.participant_id, [0, 0])
        acc[0] += b.frames
        acc[1] += b.face_sum
        pose[b.index][0] += b.pose_faces
        pose[b.index][1] += b.attentive_faces
        labels[b.index].update(b.label_counts)

    points = []
    for k in range(first, n_buckets):
        counts = per_participant.get(k, {})
        if k == n_buckets - 1 and not counts and k > first:
            break
        visible = sum(_round_half_up(face_sum / frames) for frames, face_sum in counts.values())
        pose_faces, attentive_faces = pose.get(k, (0, 0))
        points.append(
            {
                "t": (start + timedelta(seconds=k * bucket_s)).isoformat(),
                "faces": visible,
                "mix": mix_from_counts(labels.get(k, {}), order),
                "attention": attention_share(attentive_faces, pose_faces),
            }
        )
    return points


def timeline(
    frames: Iterable[FrameRow],
    faces: Iterable[FaceRow],
    start: datetime,
    end: datetime,
    bucket_s: float,
    order: Sequence[str] = (),
    max_points: int = MAX_TIMELINE_POINTS,
) -> list[dict]:
    """Session timeline recounted from per-frame rows: :func:`bucket_timeline` of
    :func:`buckets_from_rows`.

    Args:
        frames: analysed frames.
        faces: observed faces, with ``participant_id`` set.
        start, end, bucket_s, order, max_points: see :func:`bucket_timeline`.

    Returns:
        See :func:`bucket_timeline`.

    Raises:
        ValueError: if ``bucket_s`` <= 0, or a face has no ``participant_id``.
    """
    return bucket_timeline(
        buckets_from_rows(frames, faces, start, bucket_s), start, end, bucket_s, order, max_points
    )


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


def suppress_small_groups(points: list[dict], min_size: int) -> list[dict]:
    """Timeline points with their ``mix`` and ``attention`` blanked where fewer than
    ``min_size`` faces were visible (``point["faces"] < min_size``): figures about one or two
    people are figures about individuals (a k-anonymity threshold, Sweeney 2002).

    Args:
        points: :func:`bucket_timeline` output.
        min_size: smallest group whose figures are shown, ``>= 1``.

    Returns:
        New point dicts: ``mix`` ``{}`` and ``attention`` ``None`` below the threshold, each
        with ``"suppressed": bool``.
    """
    return [
        {**p, "mix": {}, "attention": None, "suppressed": True}
        if p.get("faces", 0) < min_size
        else {**p, "suppressed": False}
        for p in points
    ]
