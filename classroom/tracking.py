"""Anonymous face tracks across one participant's frames, and time-aware smoothing per track.

Pure Python (no Django, no ORM, no numpy): ``services.record_frame_result`` loads the
participant's live tracks, calls :func:`step`, and writes back what it returns. Only boxes and
arrival times are used: no face recognition, no embeddings, no pixels.

Matching (:func:`match`) is greedy and one-to-one, in two passes:

1. pairs (track, detection) with IoU >= ``min_iou`` (0.3, the usual SORT/ByteTrack gate),
   highest IoU first;
2. remaining pairs whose centres are within ``max_centre_distance`` (1.0) face sizes of each
   other and whose sizes differ by at most ``max_scale_change`` (2x), nearest first: a face
   that moved further than its overlap allows between two frames one second apart.

Greedy association by descending affinity is what CenterTrack (Zhou, Koltun, Krähenbühl,
"Tracking Objects as Points", ECCV 2020) uses. When each face passes the gates of at most one
track (faces in a gallery or around a webcam do not overlap each other) it gives the same
assignment as the Hungarian method, without adding scipy.

A track lives while ``now - last_seen <= max_age_s`` (:func:`max_age_s`: at least
``ENGAGEMENT_TRACK_MAX_AGE_S``, default 5 s, and at least :data:`MIN_AGE_FRAME_INTERVALS`
frame intervals), so a face missed for a few frames keeps its number; after that the track is
dead and a face at the same place gets the next number.

Smoothing (:func:`ema_update`) is the exponential moving average for unevenly spaced series:
``s_n = s_{n-1} + alpha_n * (x_n - s_{n-1})`` with ``alpha_n = 1 - exp(-(t_n - t_{n-1}) / tau)``
(A. Eckner, "Algorithms for Unevenly Spaced Time Series: Moving Averages and Other Rolling
Operators", 2012, revised 2019: the EMA with the "next" sampling scheme). It is the discrete
solution of the first-order low-pass filter ``tau * ds/dt = x - s``: a gap twice as long forgets
the past twice as much (in log terms), whatever the frame rate. The first observation of a track
is its raw value.

Out-of-order frames (several workers): a frame older than its track's last frame is matched for
its track number, but leaves the track's box, last-seen time, last seq and smoothed state as they
are (only ``hits`` and, if earlier, ``first_seen_s`` change); its observation is given the
track's current smoothed value (the newest estimate, which already covers a later time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

#: Pass 1 gate: minimum intersection over union of a track's last box and a detection.
MIN_IOU = 0.3
#: Pass 2 gate: maximum centre distance, in face sizes (see :func:`centre_distance`).
MAX_CENTRE_DISTANCE = 1.0
#: Pass 2 gate: maximum ratio between the two boxes' sizes (sqrt of the area ratio).
MAX_SCALE_CHANGE = 2.0
#: A track survives at least this many frame intervals without a match (2 missed frames at the
#: session's pace, whatever ``ENGAGEMENT_TRACK_MAX_AGE_S`` says).
MIN_AGE_FRAME_INTERVALS = 3.0


@dataclass(frozen=True)
class Box:
    """A face box normalised to the frame: top-left corner and size, fractions of width/height.

    Attributes:
        x, y: left and top edges, 0..1.
        w, h: width and height, 0..1 (may be 0 for a degenerate box).
    """

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        """Area, fraction of the frame's area (0..1)."""
        return max(self.w, 0.0) * max(self.h, 0.0)

    @property
    def centre(self) -> tuple[float, float]:
        """``(cx, cy)``, fractions of width and height."""
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)


@dataclass(frozen=True)
class FaceMeasurement:
    """One face of the frame being recorded.

    Attributes:
        box: its box.
        probabilities: the classifier's 7 probabilities (FER2013 order), or ``None`` when no
            expression was computed (attention-only sessions).
    """

    box: Box
    probabilities: tuple[float, ...] | None = None


@dataclass(frozen=True)
class TrackState:
    """What is known of one track (a ``Track`` row, without the database).

    Attributes:
        number: anonymous number within the participant, 1, 2, ...
        box: box of the newest matched frame.
        first_seen_s, last_seen_s: arrival times of the oldest and newest matched frames,
            seconds (any epoch, the same for every call).
        last_seq: seq of the newest matched frame.
        hits: frames matched to the track.
        smoothed: EMA of the probabilities at ``smoothed_s``, or ``None`` when no frame of the
            track had probabilities yet.
        smoothed_s: arrival time of the newest frame that moved ``smoothed``, seconds; ``None``
            means ``last_seen_s``. It lags ``last_seen_s`` after frames whose face was seen but
            not read (the face-quality gate), so the next EMA step spans the whole gap.
    """

    number: int
    box: Box
    first_seen_s: float
    last_seen_s: float
    last_seq: int
    hits: int = 1
    smoothed: tuple[float, ...] | None = None
    smoothed_s: float | None = None


@dataclass(frozen=True)
class Assignment:
    """The outcome for one detection.

    Attributes:
        number: the track number the detection belongs to.
        created: whether the track was started by this detection.
        late: whether the frame was older than the track's newest frame (state not moved).
        smoothed: the smoothed probabilities to store with this observation: ``None`` when the
            detection has no probabilities, else the track's smoothed state after this frame.
    """

    number: int
    created: bool
    late: bool
    smoothed: tuple[float, ...] | None


@dataclass(frozen=True)
class Step:
    """Result of :func:`step`.

    Attributes:
        assignments: one per detection, in the detections' order.
        tracks: the new state of every track created or matched by this frame, by number.
    """

    assignments: tuple[Assignment, ...]
    tracks: dict[int, TrackState]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes, in [0, 1] (0 when both are empty)."""
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance between the boxes' centres in face sizes (dimensionless, >= 0).

    Each axis is divided by the boxes' mean extent on that axis, so the measure does not depend
    on the frame's aspect ratio (boxes are fractions of width and height): 1.0 means the face
    moved by about its own width (or height). ``inf`` when a box is degenerate.
    """
    mean_w = (a.w + b.w) / 2.0
    mean_h = (a.h + b.h) / 2.0
    if mean_w <= 0 or mean_h <= 0:
        return math.inf
    (ax, ay), (bx, by) = a.centre, b.centre
    return math.hypot((ax - bx) / mean_w, (ay - by) / mean_h)


def _scale_change(a: Box, b: Box) -> float:
    if a.area <= 0 or b.area <= 0:
        return math.inf
    ratio = math.sqrt(a.area / b.area)
    return max(ratio, 1.0 / ratio)


def match(
    track_boxes: Sequence[Box],
    detection_boxes: Sequence[Box],
    *,
    min_iou: float = MIN_IOU,
    max_centre_distance: float = MAX_CENTRE_DISTANCE,
    max_scale_change: float = MAX_SCALE_CHANGE,
) -> list[int | None]:
    """Assign detections to tracks, one-to-one, greedily (IoU first, then centre distance).

    Args:
        track_boxes: last box of each candidate track.
        detection_boxes: boxes of the frame's faces.
        min_iou: pass-1 gate, in (0, 1].
        max_centre_distance: pass-2 gate, face sizes (:func:`centre_distance`).
        max_scale_change: pass-2 gate on the size ratio (>= 1).

    Returns:
        For each detection, the index of its track in ``track_boxes``, or ``None``.
        Ties are broken by (track index, detection index), so the result is deterministic.
    """
    assigned: list[int | None] = [None] * len(detection_boxes)
    used_tracks: set[int] = set()

    by_iou = []
    for t, tb in enumerate(track_boxes):
        for d, db in enumerate(detection_boxes):
            overlap = iou(tb, db)
            if overlap >= min_iou:
                by_iou.append((-overlap, t, d))
    by_distance = []
    for t, tb in enumerate(track_boxes):
        for d, db in enumerate(detection_boxes):
            distance = centre_distance(tb, db)
            if distance <= max_centre_distance and _scale_change(tb, db) <= max_scale_change:
                by_distance.append((distance, t, d))

    for candidates in (sorted(by_iou), sorted(by_distance)):
        for _, t, d in candidates:
            if t in used_tracks or assigned[d] is not None:
                continue
            assigned[d] = t
            used_tracks.add(t)
    return assigned


def ema_alpha(dt_s: float, tau_s: float) -> float:
    """Weight of a new value after a gap: ``1 - exp(-dt / tau)``, in [0, 1).

    Args:
        dt_s: time since the previous value, seconds; negative gaps count as 0.
        tau_s: time constant, seconds (> 0); ``tau <= 0`` means no smoothing (returns 1).
    """
    if tau_s <= 0:
        return 1.0
    return -math.expm1(-max(dt_s, 0.0) / tau_s)


def ema_update(
    previous: Sequence[float] | None, value: Sequence[float], dt_s: float, tau_s: float
) -> tuple[float, ...]:
    """One step of the time-aware EMA (Eckner 2012/2019, "next" scheme), element-wise.

    Args:
        previous: the smoothed vector at the previous time, or ``None`` (first value).
        value: the new raw vector (same length).
        dt_s: seconds since the previous value (>= 0).
        tau_s: time constant, seconds.

    Returns:
        ``previous + alpha * (value - previous)`` with ``alpha = ema_alpha(dt_s, tau_s)``;
        ``tuple(value)`` when ``previous`` is ``None``. A convex combination, so probabilities
        that sum to 1 still do (up to rounding).

    Raises:
        ValueError: the lengths differ.
    """
    if previous is None:
        return tuple(float(v) for v in value)
    if len(previous) != len(value):
        raise ValueError("previous and value must have the same length")
    alpha = ema_alpha(dt_s, tau_s)
    return tuple(
        float(p) + alpha * (float(v) - float(p)) for p, v in zip(previous, value, strict=True)
    )


def max_age_s(configured_s: float, frame_interval_s: float) -> float:
    """How long a track outlives its last match, seconds.

    Args:
        configured_s: ``ENGAGEMENT_TRACK_MAX_AGE_S`` (default 5 s).
        frame_interval_s: the session's seconds between frames (0.2 to 10).

    Returns:
        ``max(configured_s, MIN_AGE_FRAME_INTERVALS * frame_interval_s)``: at 1 fps a track
        survives 4 missed frames; at one frame every 10 s, 2 (a fixed 5 s would kill every
        track between two frames).
    """
    return max(float(configured_s), MIN_AGE_FRAME_INTERVALS * float(frame_interval_s))


def is_alive(track: TrackState, now_s: float, max_age: float) -> bool:
    """Whether ``track`` may still be matched by a frame that arrived at ``now_s``."""
    return now_s - track.last_seen_s <= max_age


def step(
    tracks: Sequence[TrackState],
    detections: Sequence[FaceMeasurement],
    *,
    now_s: float,
    seq: int,
    next_number: int,
    max_age: float,
    tau_s: float,
) -> Step:
    """Match one frame's faces to the live tracks and update their smoothed probabilities.

    Args:
        tracks: the participant's tracks (dead ones are ignored, see :func:`is_alive`).
        detections: the frame's faces, in the frame's order.
        now_s: the frame's arrival time, seconds (same clock as the tracks').
        seq: the frame's seq.
        next_number: number of the first track this frame may create (then +1 each).
        max_age: :func:`max_age_s`, seconds.
        tau_s: EMA time constant, seconds.

    Returns:
        A :class:`Step`. Tracks not matched are not in ``Step.tracks`` (unchanged). A frame
        older than a matched track's newest frame ("late") keeps that track's box, times, seq
        and smoothed state, and only counts a hit; the observation gets the track's current
        smoothed value (or its own raw value when the track had none yet, which then becomes
        the track's state).
    """
    live = [t for t in tracks if is_alive(t, now_s, max_age)]
    matched = match([t.box for t in live], [d.box for d in detections])
    updated: dict[int, TrackState] = {}
    assignments: list[Assignment] = []
    number = next_number
    for detection, index in zip(detections, matched, strict=True):
        raw = detection.probabilities
        if index is None:
            smoothed = ema_update(None, raw, 0.0, tau_s) if raw is not None else None
            state = TrackState(
                number=number,
                box=detection.box,
                first_seen_s=now_s,
                last_seen_s=now_s,
                last_seq=seq,
                hits=1,
                smoothed=smoothed,
                smoothed_s=None if smoothed is None else now_s,
            )
            updated[number] = state
            assignments.append(Assignment(number, created=True, late=False, smoothed=smoothed))
            number += 1
            continue
        track = live[index]
        if now_s < track.last_seen_s:
            # Late frame: keep the newer state; fill it only if it has none yet.
            state_smoothed, smoothed_s = track.smoothed, track.smoothed_s
            if state_smoothed is None and raw is not None:
                state_smoothed, smoothed_s = tuple(float(v) for v in raw), now_s
            state = replace(
                track,
                first_seen_s=min(track.first_seen_s, now_s),
                hits=track.hits + 1,
                smoothed=state_smoothed,
                smoothed_s=smoothed_s,
            )
            stored = state_smoothed if raw is not None else None
            assignments.append(Assignment(track.number, created=False, late=True, smoothed=stored))
        else:
            state_smoothed = track.smoothed
            smoothed_s = track.last_seen_s if track.smoothed_s is None else track.smoothed_s
            if raw is not None:
                state_smoothed = ema_update(
                    track.smoothed, raw, max(0.0, now_s - smoothed_s), tau_s
                )
                smoothed_s = now_s
            state = replace(
                track,
                box=detection.box,
                last_seen_s=now_s,
                last_seq=seq,
                hits=track.hits + 1,
                smoothed=state_smoothed,
                smoothed_s=None if state_smoothed is None else smoothed_s,
            )
            stored = state_smoothed if raw is not None else None
            assignments.append(Assignment(track.number, created=False, late=False, smoothed=stored))
        updated[track.number] = state
    return Step(assignments=tuple(assignments), tracks=updated)


def argmax_label(probabilities: Sequence[float], labels: Sequence[str]) -> str:
    """The label of the largest probability (the first one on a tie).

    Raises:
        ValueError: the lengths differ or are 0.
    """
    if not probabilities or len(probabilities) != len(labels):
        raise ValueError("probabilities and labels must have the same, non-zero length")
    best = max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))
    return labels[best]


class Tracker:
    """In-memory tracks of one stream (tests, simulations); the app keeps them in ``Track`` rows.

    Args:
        max_age: seconds a track outlives its last match.
        tau_s: EMA time constant, seconds.
    """

    def __init__(self, *, max_age: float, tau_s: float):
        self.max_age = max_age
        self.tau_s = tau_s
        self.tracks: dict[int, TrackState] = {}
        self._next_number = 1

    def update(self, detections: Sequence[FaceMeasurement], *, now_s: float, seq: int) -> Step:
        """Record one frame; see :func:`step`."""
        result = step(
            list(self.tracks.values()),
            detections,
            now_s=now_s,
            seq=seq,
            next_number=self._next_number,
            max_age=self.max_age,
            tau_s=self.tau_s,
        )
        self.tracks.update(result.tracks)
        self._next_number += sum(a.created for a in result.assignments)
        return result
