"""On-device sessions: check one numbers message, and record many in one transaction.

A browser that analyses its own frames sends one small JSON message per frame
(:mod:`contracts.device`). Checking it needs no database (:func:`check_device_message`: the
session as the socket saw it, the in-memory rate limits, the schema), so the stream socket
answers at once; the accepted messages of every socket of the web process are then recorded
together, a batch every few tens of milliseconds (:func:`record_device_batch`). One transaction
per message (counting it, then ``record_frame_result``) cost 15 ms per message, timed in one
process against PostgreSQL on a 2-core Intel Xeon, and one web process kept up with about 50
students; a batch of 500 costs 0.7 ms per message, and one web process holds 500 students
(``deploy/load-test.sh --on-device``). The rows are the ones ``record_frame_result`` writes
for a worker's result (a test checks they are identical): frames keyed by the participant's
message count, tracks and smoothing, faces, timeline buckets and counters.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

import contracts
from classroom import aggregates, realtime
from classroom.choices import (
    TIMELINE_BUCKET_S,
    AnalysisMode,
    AnalysisSite,
    FrameErrorCode,
    SessionStatus,
)
from classroom.models import FaceObservation, FrameResult, Participant, TimelineBucket, Track
from classroom.services.errors import FrameRejected
from classroom.services.rate_limit import address_byte_budget, frame_rate_limiter
from classroom.services.results import face_observation, ms_to_datetime
from classroom.services.timeline import frame_counts
from classroom.services.tracks import _update_tracks, step_tracks
from classroom.tracking import max_age_s

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamSession:
    """What a stream socket knows of its participant's session (read when it connects; the
    status is refreshed by the caller).

    Attributes:
        participant_id: ``Participant.pk``.
        session_id: ``ClassSession.pk``.
        status: ``SessionStatus`` value.
        analysis_site: ``AnalysisSite`` value.
        frame_interval_s: the session's frame interval, seconds.
        expressions: whether expressions are recorded (``selectors.expressions_on``).
    """

    participant_id: int
    session_id: object
    status: str
    analysis_site: str
    frame_interval_s: float
    expressions: bool


@dataclass(frozen=True, slots=True)
class DeviceItem:
    """One numbers message for :func:`record_device_batch`: accepted (``result`` given) or
    rejected (``result`` ``None``: only counted).

    Attributes:
        participant_id: ``Participant.pk``.
        seq: the client's frame counter, or ``None`` for a rejected message without one.
        result: the worker's result dict (``contracts.DeviceAnalysis.result``), or ``None``.
        captured_at_ms: client capture time, ms since the Unix epoch, or ``None``.
        received_at_ms: server arrival time, ms since the Unix epoch.
    """

    participant_id: int
    seq: int | None
    result: dict | None
    captured_at_ms: float | None
    received_at_ms: float


def check_device_message(
    stream: StreamSession, text: str, *, client_address: str | None
) -> contracts.DeviceAnalysis:
    """Check one numbers message without touching the database.

    In order: the session is live, it analyses on the device, the rate (the frame rate
    limiter: one message per frame interval, as pictures), the client address's byte budget,
    and the message itself (size <= ``ENGAGEMENT_DEVICE_MAX_MESSAGE_BYTES``, at most
    ``ENGAGEMENT_DEVICE_MAX_FACES`` faces, the schema, probabilities summing to 1).

    Args:
        stream: the socket's view of the session.
        text: the WebSocket text message.
        client_address: the peer's address, or ``None`` (no address budget).

    Returns:
        The validated message, its label and attention derived on the server.

    Raises:
        FrameRejected: ``session_not_live``, ``text_not_supported`` (a server-analysed
            session), ``rate_limited`` or ``bad_analysis`` (the message names the field); its
            ``seq`` is the message's when it can be read (:func:`peek_device_seq`).
    """
    try:
        return _check(stream, text, client_address)
    except FrameRejected as exc:
        exc.seq = peek_device_seq(text)  # parsed again only for a rejection
        raise


def _check(stream: StreamSession, text: str, client_address: str | None):
    if stream.status != SessionStatus.LIVE:
        raise FrameRejected(
            FrameErrorCode.SESSION_NOT_LIVE, f"The session is {stream.status}, not live."
        )
    if stream.analysis_site != AnalysisSite.ON_DEVICE:
        raise FrameRejected(
            FrameErrorCode.TEXT_NOT_SUPPORTED,
            "This session analyses faces on the server: send frames as binary messages.",
        )
    if not frame_rate_limiter.allow(stream.participant_id, stream.frame_interval_s):
        raise FrameRejected(
            FrameErrorCode.RATE_LIMITED,
            f"Send at most one analysis every {stream.frame_interval_s:g} s.",
        )
    if client_address is not None:
        rate = float(settings.ENGAGEMENT_INTAKE_BYTES_PER_S_PER_ADDRESS)
        size = len(text.encode("utf-8"))
        if not address_byte_budget.take(client_address, size, rate, 2.0 * rate):
            raise FrameRejected(
                FrameErrorCode.RATE_LIMITED,
                "Too many bytes from this network address; messages are being skipped.",
            )
    try:
        return contracts.parse_device_analysis(
            text,
            max_faces=int(settings.ENGAGEMENT_DEVICE_MAX_FACES),
            max_bytes=int(settings.ENGAGEMENT_DEVICE_MAX_MESSAGE_BYTES),
            with_expressions=stream.expressions,
        )
    except contracts.ContractError as exc:
        raise FrameRejected(FrameErrorCode.BAD_ANALYSIS, str(exc)) from None


def peek_device_seq(text: str) -> int | None:
    """The ``seq`` of a numbers message, for an error reply, or ``None``. Only a message under
    ``ENGAGEMENT_DEVICE_MAX_MESSAGE_BYTES`` characters is parsed, and only a uint32 returned."""
    if len(text) > settings.ENGAGEMENT_DEVICE_MAX_MESSAGE_BYTES:
        return None
    try:
        seq = json.loads(text).get("seq")
    except (ValueError, AttributeError, RecursionError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < 2**32 else None


def record_device_batch(items: list[DeviceItem]) -> list[tuple[int, int, int]]:
    """Count and record a batch of numbers messages in ONE transaction.

    Every item counts in its participant's ``frames_received``; a rejected one (``result``
    ``None``) also in ``frames_rejected``; an accepted one in ``device_analyses``. An accepted
    item of a participant who exists, has not withdrawn and whose session is live is recorded
    as ``services.record_frame_result`` records a worker's result (same rows, same tracks and
    smoothing, same buckets, ``frames_analysed``), under the participant's server key
    (``frames_received`` after it), in the batch's order; the others are dropped (logged at
    INFO), like a late worker result. The participants' rows are locked first (PostgreSQL),
    so a batch and a worker never interleave on one participant. On commit each session's
    dashboards refresh once; the students get no ``result`` message (their pages computed it).

    Args:
        items: in arrival order; any participants, any sessions.

    Returns:
        ``(participant_id, seq, faces)`` of each recorded frame.

    Raises:
        contracts.ContractError: an item's result does not follow the schema (a caller bug:
            :func:`check_device_message` makes them); nothing is written.
        django.db.DatabaseError: the database failed; nothing is written.
    """
    if not items:
        return []
    ids = sorted({item.participant_id for item in items})
    now = timezone.now()
    recorded: list[tuple[int, int, int]] = []
    with transaction.atomic():
        participants = {
            p.pk: p
            for p in Participant.objects.select_for_update(of=("self",))
            .select_related("session")
            .filter(pk__in=ids)
            .order_by("pk")
        }
        counters = {pk: [p.frames_received, 0, 0, 0] for pk, p in participants.items()}
        frames: list[FrameResult] = []
        faces: list[list[FaceObservation]] = []
        pending: list[tuple[Participant, DeviceItem, int, datetime, list[FaceObservation]]] = []
        for item in items:
            participant = participants.get(item.participant_id)
            if participant is None:
                continue  # gone (deleted): nothing to count
            counter = counters[participant.pk]
            counter[0] += 1  # frames_received, and this message's key
            if item.result is None:
                counter[1] += 1  # frames_rejected
                continue
            counter[2] += 1  # device_analyses
            session = participant.session
            if session.status != SessionStatus.LIVE or participant.withdrawn_at is not None:
                logger.info(
                    "analysis %s of participant %s dropped: session %s, withdrawn %s",
                    item.seq,
                    participant.pk,
                    session.status,
                    participant.withdrawn_at is not None,
                )
                continue
            payload = contracts.FrameResultPayload.from_dict(
                item.result, with_expressions=session.analysis != AnalysisMode.ATTENTION
            )
            observations = [face_observation(i, face) for i, face in enumerate(payload.faces)]
            arrived = ms_to_datetime(item.received_at_ms) or now
            counter[3] += 1  # frames_analysed
            frames.append(
                FrameResult(
                    participant=participant,
                    seq=counter[0],
                    captured_at=ms_to_datetime(item.captured_at_ms),
                    received_at=arrived,
                    analysed_at=now,
                    face_count=len(observations),
                    width=payload.width,
                    height=payload.height,
                    timings_ms=payload.timings_ms,
                )
            )
            faces.append(observations)
            pending.append((participant, item, counter[0], arrived, observations))

        _track_batch(pending)
        FrameResult.objects.bulk_create(frames)
        for frame, observations in zip(frames, faces, strict=True):
            for observation in observations:
                observation.frame = frame
        FaceObservation.objects.bulk_create([o for group in faces for o in group])
        _add_to_timeline(pending)
        _count(participants, counters, now)
        for participant, item, _key, _arrived, observations in pending:
            recorded.append((participant.pk, int(item.seq or 0), len(observations)))
        sessions = {p.session_id for p, *_ in pending}
        transaction.on_commit(partial(_after_batch, sessions))
    return recorded


def _track_batch(pending) -> None:
    """Tracks of every recorded frame, in order, on rows loaded once per participant."""
    if not pending:
        return
    ids = sorted({participant.pk for participant, *_ in pending})
    oldest = min(arrived for *_, arrived, _ in pending)
    longest = max(
        max_age_s(settings.ENGAGEMENT_TRACK_MAX_AGE_S, p.session.frame_interval_s)
        for p, *_ in pending
    )
    rows: dict[int, dict[int, Track]] = defaultdict(dict)
    for row in Track.objects.filter(
        participant_id__in=ids, last_seen_at__gte=oldest - timedelta(seconds=longest)
    ):
        rows[row.participant_id][row.number] = row
    last = dict(
        Track.objects.filter(participant_id__in=ids)
        .values("participant_id")
        .annotate(n=Max("number"))
        .values_list("participant_id", "n")
    )
    created: list[Track] = []
    changed: dict[int, Track] = {}
    for participant, _item, key, arrived, observations in pending:
        new, moved = step_tracks(
            participant,
            participant.session,
            rows[participant.pk],
            last.get(participant.pk) or 0,
            observations,
            seq=key,
            received_at=arrived,
        )
        created += new
        if new:
            last[participant.pk] = max(row.number for row in new)
        changed.update({row.pk: row for row in moved if row.pk is not None})
    Track.objects.bulk_create(created)
    _update_tracks(list(changed.values()))


def _add_to_timeline(pending) -> None:
    """Every recorded frame into its participant's bucket: summed per bucket, then one
    ``UPDATE`` per existing bucket (``executemany``) and one ``INSERT`` for the new ones."""
    totals: dict[tuple[int, int], dict[str, int]] = {}
    for participant, _item, _key, arrived, observations in pending:
        index = aggregates.bucket_index(arrived, participant.session.started_at, TIMELINE_BUCKET_S)
        bucket = totals.setdefault((participant.pk, index), defaultdict(int))
        for name, value in frame_counts(observations).items():
            bucket[name] += value
    if not totals:
        return
    existing = set(
        TimelineBucket.objects.filter(
            participant_id__in={pid for pid, _ in totals},
            index__in={index for _, index in totals},
        ).values_list("participant_id", "index")
    )
    columns = ["frames", "face_sum", "pose_faces", "attentive_faces", *contracts.EXPRESSIONS]
    qn = connection.ops.quote_name
    table = qn(TimelineBucket._meta.db_table)
    assignments = ", ".join(f"{qn(c)} = {qn(c)} + %s" for c in columns)
    sql = (
        f"UPDATE {table} SET {assignments} WHERE {qn('participant_id')} = %s AND {qn('index')} = %s"
    )
    updates = [
        [counts.get(c, 0) for c in columns] + [pid, index]
        for (pid, index), counts in totals.items()
        if (pid, index) in existing
    ]
    if updates:
        with connection.cursor() as cursor:
            cursor.executemany(sql, updates)
    TimelineBucket.objects.bulk_create(
        [
            TimelineBucket(participant_id=pid, index=index, **counts)
            for (pid, index), counts in totals.items()
            if (pid, index) not in existing
        ]
    )


def _count(participants: dict[int, Participant], counters: dict[int, list[int]], now) -> None:
    """The participants' counters, one ``UPDATE`` per participant (``executemany``)."""
    qn = connection.ops.quote_name
    table = qn(Participant._meta.db_table)
    sql = (
        f"UPDATE {table} SET {qn('frames_received')} = %s, "
        f"{qn('frames_rejected')} = {qn('frames_rejected')} + %s, "
        f"{qn('device_analyses')} = {qn('device_analyses')} + %s, "
        f"{qn('frames_analysed')} = {qn('frames_analysed')} + %s, "
        f"{qn('last_seen_at')} = %s WHERE {qn('id')} = %s"
    )
    field = Participant._meta.get_field("last_seen_at")
    seen = field.get_db_prep_save(now, connection)
    params = [
        [received, rejected, device, analysed, seen, pk]
        for pk, (received, rejected, device, analysed) in counters.items()
        if received != participants[pk].frames_received
    ]
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(sql, params)


def _after_batch(sessions) -> None:
    # Only the boards: the student's page computed the result itself and shows it, so no
    # ``result`` message goes back (it would double the socket and Redis traffic per frame).
    for session_id in sessions:
        realtime.broadcast(session_id)
