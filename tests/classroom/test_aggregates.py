"""Pure aggregation maths (no database)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from classroom import aggregates
from classroom.aggregates import BucketRow, FaceRow, FrameRow
from classroom.choices import EXPRESSIONS

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def frame(pid: int, t: float, faces: int, lag_s: float = 0.05) -> FrameRow:
    return FrameRow(pid, at(t), at(t + lag_s), faces)


def test_expression_mix_empty_is_empty_dict():
    assert aggregates.expression_mix([]) == {}


def test_expression_mix_shares_in_fer_order_sum_to_one():
    mix = aggregates.expression_mix(["happy", "happy", "sad", "neutral"], EXPRESSIONS)
    assert list(mix) == list(EXPRESSIONS)
    assert mix["happy"] == 0.5
    assert mix["sad"] == 0.25
    assert mix["neutral"] == 0.25
    assert mix["angry"] == 0.0
    assert sum(mix.values()) == pytest.approx(1.0)


def test_expression_mix_without_order_lists_observed_labels():
    assert aggregates.expression_mix(["sad", "happy", "sad", "bored"], ("happy",)) == {
        "happy": 0.25,
        "sad": 0.5,
        "bored": 0.25,
    }
    assert aggregates.expression_mix(["sad"]) == {"sad": 1.0}


def test_expression_mix_rounds_thirds():
    mix = aggregates.expression_mix(["fear", "angry", "surprise"])
    assert mix["fear"] == 0.3333
    assert sum(mix.values()) == pytest.approx(1.0, abs=1e-3)


def test_latest_per_participant():
    rows = [frame(1, 1, 2), frame(1, 3, 1), frame(2, 2, 4), frame(1, 2, 5)]
    latest = aggregates.latest_per_participant(rows)
    assert latest[1].face_count == 1
    assert latest[2].face_count == 4


def test_live_counts_use_latest_frame_per_participant_in_window():
    now = at(100)
    rows = [
        frame(1, 85, 7),  # outside the 10-s window
        frame(1, 95, 2),
        frame(1, 99, 1),  # latest of participant 1
        frame(2, 92, 3),  # only frame of participant 2 in window
        frame(3, 80, 9),  # participant 3 not seen now
    ]
    assert aggregates.live_counts(rows, now, 10) == (4, 2)
    assert aggregates.live_counts([], now, 10) == (0, 0)


def test_live_window_is_half_open():
    now = at(100)
    assert aggregates.live_counts([frame(1, 90, 1)], now, 10) == (0, 0)  # exactly 10 s old
    assert aggregates.live_counts([frame(1, 100, 1)], now, 10) == (1, 1)


def test_window_mix_only_recent_faces():
    now = at(100)
    faces = [
        FaceRow(at(50), "angry"),
        FaceRow(at(95), "happy"),
        FaceRow(at(99), "happy"),
        FaceRow(at(98), "sad"),
    ]
    mix = aggregates.window_mix(faces, now, 10, EXPRESSIONS)
    assert mix["happy"] == pytest.approx(2 / 3, abs=1e-4)
    assert mix["sad"] == pytest.approx(1 / 3, abs=1e-4)
    assert mix["angry"] == 0.0


def test_latest_lag_ms():
    assert aggregates.latest_lag_ms([]) is None
    rows = [frame(1, 1, 0, lag_s=0.5), frame(1, 2, 0, lag_s=0.120)]
    assert aggregates.latest_lag_ms(rows) == pytest.approx(120.0)


def test_timeline_buckets_fill_gaps_and_average_faces_per_participant():
    frames = [
        # bucket 0 [0, 5): participant 1 sees 1,1,0 -> mean 0.67 -> 1; participant 2 sees 2 -> 2
        frame(1, 0.5, 1),
        frame(1, 1.5, 1),
        frame(1, 2.5, 0),
        frame(2, 3.0, 2),
        # bucket 1 [5, 10): empty
        # bucket 2 [10, 15): participant 1 sees 1, 0 -> mean 0.5 -> rounds half up to 1
        frame(1, 10.0, 1),
        frame(1, 14.9, 0),
    ]
    faces = [
        FaceRow(at(0.5), "happy", True, 1),
        FaceRow(at(1.5), "happy", False, 1),
        FaceRow(at(3.0), "sad", True, 2),
        FaceRow(at(3.0), "sad", None, 2),  # no head pose: not in the attention share
        FaceRow(at(10.0), "surprise", None, 1),
    ]
    points = aggregates.timeline(frames, faces, start=T0, end=at(12), bucket_s=5, order=EXPRESSIONS)
    assert [p["t"] for p in points] == [T0.isoformat(), at(5).isoformat(), at(10).isoformat()]
    assert [p["faces"] for p in points] == [3, 0, 1]
    assert points[0]["mix"]["happy"] == 0.5 and points[0]["mix"]["sad"] == 0.5
    assert points[1]["mix"] == {}
    assert points[2]["mix"]["surprise"] == 1.0
    assert [p["attention"] for p in points] == [pytest.approx(2 / 3, abs=1e-4), None, None]


def test_timeline_leaves_out_the_newest_bucket_until_it_has_a_frame():
    frames = [frame(1, 3.0, 4), frame(1, 4.0, 4)]
    # end=5.2: bucket [5, 10) has begun but holds no frame yet -> not plotted as 0 faces.
    points = aggregates.timeline(frames, [], start=T0, end=at(5.2), bucket_s=5)
    assert [p["faces"] for p in points] == [4]
    # Once a frame arrives in it, it is plotted.
    points = aggregates.timeline([*frames, frame(1, 5.1, 3)], [], start=T0, end=at(5.2), bucket_s=5)
    assert [p["faces"] for p in points] == [4, 3]
    # An empty bucket before the newest one is a real gap and stays at 0.
    points = aggregates.timeline([*frames, frame(1, 11.0, 2)], [], start=T0, end=at(11), bucket_s=5)
    assert [p["faces"] for p in points] == [4, 0, 2]


def test_timeline_counts_early_rows_in_bucket_0_ignores_later_ones_and_empty_ranges():
    assert aggregates.timeline([], [], start=at(10), end=at(5), bucket_s=5) == []
    points = aggregates.timeline(
        [frame(1, -1, 3), frame(1, 30, 5)], [], start=T0, end=at(4.9), bucket_s=5
    )
    # -1 s: before the start, counted in bucket 0 as the recording code counts it; 30 s: past
    # the end of the range.
    assert points == [{"t": T0.isoformat(), "faces": 3, "mix": {}, "attention": None}]


@pytest.mark.parametrize(
    ("seconds", "index"),
    [(-3600, 0), (-0.001, 0), (0, 0), (4.999, 0), (5, 1), (9.999, 1), (10, 2), (3600, 720)],
)
def test_bucket_index_edges(seconds, index):
    assert aggregates.bucket_index(at(seconds), T0, 5) == index


def test_bucket_index_without_a_start_is_0_and_rejects_a_bad_width():
    assert aggregates.bucket_index(at(100), None, 5) == 0
    with pytest.raises(ValueError):
        aggregates.bucket_index(at(1), T0, 0)


def test_timeline_keeps_latest_points_when_capped():
    points = aggregates.timeline(
        [frame(1, 99, 2)], [], start=T0, end=at(99), bucket_s=5, max_points=3
    )
    assert len(points) == 3
    assert points[-1]["t"] == at(95).isoformat()
    assert points[-1]["faces"] == 2


def test_timeline_rejects_bad_bucket():
    with pytest.raises(ValueError):
        aggregates.timeline([], [], start=T0, end=T0, bucket_s=0)


def test_mean_and_percentile():
    assert aggregates.mean([]) is None
    assert aggregates.mean([1, 2, 3]) == 2
    assert aggregates.percentile([], 50) is None
    assert aggregates.percentile([1, 2, 3, 4], 50) == 2.5
    assert aggregates.percentile([10, 20, 30, 40, 50], 95) == pytest.approx(48.0)
    with pytest.raises(ValueError):
        aggregates.percentile([1], 101)


# --- smoothed mix from counts, attention, lag p95, latest frames, bucket timeline -------


def test_mix_from_counts_matches_expression_mix_and_skips_none():
    labels = ["happy", "happy", "sad", None, "neutral"]
    counts = {"happy": 2, "sad": 1, "neutral": 1, "angry": 0}
    assert aggregates.mix_from_counts(counts, EXPRESSIONS) == aggregates.expression_mix(
        labels, EXPRESSIONS
    )
    assert aggregates.mix_from_counts(counts, EXPRESSIONS)["happy"] == 0.5
    assert aggregates.expression_mix([None, None], EXPRESSIONS) == {}
    assert aggregates.mix_from_counts({label: 0 for label in EXPRESSIONS}, EXPRESSIONS) == {}


def test_attention_share_and_face_attention():
    assert aggregates.attention_share(0, 0) is None
    assert aggregates.attention_share(3, 4) == 0.75
    assert aggregates.attention_share(1, 3) == 0.3333
    faces = [FaceRow(at(1), None, True), FaceRow(at(2), None, False), FaceRow(at(3), None, None)]
    assert aggregates.face_attention(faces) == 0.5
    assert aggregates.face_attention([FaceRow(at(1), "sad", None)]) is None


def test_window_attention_only_recent_faces_with_pose():
    now = at(100)
    faces = [
        FaceRow(at(85), None, False),  # outside the window
        FaceRow(at(95), None, True),
        FaceRow(at(96), None, True),
        FaceRow(at(97), None, False),
        FaceRow(at(99), None, None),  # no pose
    ]
    assert aggregates.window_attention(faces, now, 10) == pytest.approx(2 / 3, abs=1e-4)
    assert aggregates.window_attention(faces[:1], now, 10) is None


def test_lag_percentile_ms():
    rows = [frame(1, t, 0, lag_s=lag) for t, lag in enumerate([0.01, 0.02, 0.03, 0.04, 0.05])]
    # numpy.percentile([10, 20, 30, 40, 50], 95) == 48.0
    assert aggregates.lag_percentile_ms(rows, 95) == pytest.approx(48.0)
    assert aggregates.lag_percentile_ms([], 95) is None


def test_latest_seen_gives_seq_and_capture_ms_per_participant():
    rows = [
        FrameRow(1, at(1), at(1.1), 1, seq=7, captured_at=at(0.9)),
        FrameRow(1, at(2), at(2.1), 1, seq=8, captured_at=at(1.9)),
        FrameRow(2, at(1.5), at(1.6), 0, seq=3, captured_at=None),
    ]
    latest = aggregates.latest_seen(rows)
    assert latest == {
        "1": {"seq": 8, "captured_at": round(at(1.9).timestamp() * 1000)},
        "2": {"seq": 3, "captured_at": None},
    }
    assert aggregates.epoch_ms(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)) == 1000


def test_bucket_timeline_rounds_faces_per_participant_and_sums_labels():
    buckets = [
        # bucket 0: participant 1 saw 2 faces in 3 frames (0.67 -> 1), participant 2 5 in 2 (2.5 -> 3)
        BucketRow(1, 0, 3, 2, 2, 1, {"happy": 2}),
        BucketRow(2, 0, 2, 5, 4, 4, {"sad": 5}),
        # bucket 2 (bucket 1 empty)
        BucketRow(1, 2, 1, 1, 0, 0, {"neutral": 1}),
    ]
    points = aggregates.bucket_timeline(buckets, T0, at(12), 5, EXPRESSIONS)
    assert [p["t"] for p in points] == [T0.isoformat(), at(5).isoformat(), at(10).isoformat()]
    assert [p["faces"] for p in points] == [1 + 3, 0, 1]
    assert points[0]["mix"]["happy"] == pytest.approx(2 / 7, abs=1e-4)
    assert points[0]["mix"]["sad"] == pytest.approx(5 / 7, abs=1e-4)
    assert [p["attention"] for p in points] == [pytest.approx(5 / 6, abs=1e-4), None, None]
    assert points[1]["mix"] == {} and points[2]["mix"]["neutral"] == 1.0


def test_bucket_timeline_attention_only_has_no_mix():
    points = aggregates.bucket_timeline([BucketRow(1, 0, 2, 2, 2, 1, {})], T0, at(1), 5)
    assert points == [{"t": T0.isoformat(), "faces": 1, "mix": {}, "attention": 0.5}]


def test_bucket_timeline_leaves_out_the_newest_empty_bucket_and_ignores_out_of_range():
    buckets = [BucketRow(1, 0, 2, 8, 0, 0, {}), BucketRow(1, 9, 1, 5, 0, 0, {})]
    # end=5.2: bucket 1 has begun but has no frame yet; bucket 9 is beyond the end
    assert [p["faces"] for p in aggregates.bucket_timeline(buckets, T0, at(5.2), 5)] == [4]
    assert aggregates.bucket_timeline(buckets, at(10), at(5), 5) == []
    with pytest.raises(ValueError):
        aggregates.bucket_timeline(buckets, T0, at(5), 0)


def _random_session(seed: int, participants: int = 3, frames_each: int = 40):
    """Random frames and faces over ~60 s: (frames, faces) rows."""
    rng = random.Random(seed)
    frames, faces = [], []
    for pid in range(1, participants + 1):
        for _ in range(frames_each):
            t = at(rng.uniform(0, 60))
            n = rng.choice([0, 1, 1, 2, 3])
            frames.append(FrameRow(pid, t, t + timedelta(milliseconds=50), n))
            for _ in range(n):
                label = rng.choice(EXPRESSIONS)
                attentive = rng.choice([True, False, None])
                faces.append(FaceRow(t, label, attentive, pid))
    return frames, faces


def _increment_buckets(frames, faces, bucket_s=5.0):
    """What record_frame_result does per frame, replayed: +1 frame, +faces, +labels per bucket."""
    table: dict[tuple[int, int], dict] = {}
    by_frame = {}
    for face in faces:
        by_frame.setdefault((face.participant_id, face.received_at), []).append(face)
    for row in frames:
        k = int((row.received_at - T0).total_seconds() // bucket_s)
        b = table.setdefault(
            (row.participant_id, k), {"frames": 0, "face_sum": 0, "pose": 0, "att": 0, "labels": {}}
        )
        b["frames"] += 1
        b["face_sum"] += row.face_count
        for face in by_frame.pop((row.participant_id, row.received_at), []):
            b["pose"] += face.attentive is not None
            b["att"] += face.attentive is True
            b["labels"][face.label] = b["labels"].get(face.label, 0) + 1
    return [
        BucketRow(pid, k, b["frames"], b["face_sum"], b["pose"], b["att"], b["labels"])
        for (pid, k), b in table.items()
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bucket_timeline_equals_row_recount(seed):
    frames, faces = _random_session(seed)
    end = at(61)
    recount = aggregates.timeline(frames, faces, T0, end, 5, EXPRESSIONS)
    from_buckets = aggregates.bucket_timeline(
        _increment_buckets(frames, faces), T0, end, 5, EXPRESSIONS
    )
    assert from_buckets == recount
    assert len(recount) == 12  # buckets 0..11; bucket 12 [60, 65) has no frame yet
    assert sorted(aggregates.buckets_from_rows(frames, faces, T0, 5)) == sorted(
        _increment_buckets(frames, faces), key=lambda b: (b.participant_id, b.index)
    )


@pytest.mark.parametrize("end_s", [0.5, 4.9, 5.0, 27.2, 29.9, 61.0, 63.0])
def test_last_three_buckets_give_the_same_tail_as_the_full_timeline(end_s):
    frames, faces = _random_session(3, frames_each=10)
    end = at(end_s)
    buckets = _increment_buckets(frames, faces)
    full = aggregates.bucket_timeline(buckets, T0, end, 5, EXPRESSIONS)
    n = aggregates.timeline_length(T0, end, 5)
    last_three = [b for b in buckets if b.index >= n - 3]
    tail = aggregates.bucket_timeline(last_three, T0, end, 5, EXPRESSIONS, max_points=3)[-2:]
    assert tail == full[-2:]


def test_expression_coverage_counts_faces_read_and_each_reason():
    from classroom.aggregates import expression_coverage

    kinds = ("too_small", "blurred")
    assert expression_coverage([], kinds) == {
        "faces": 0,
        "read": 0,
        "not_read": {"too_small": 0, "blurred": 0},
    }
    cov = expression_coverage([None, "blurred", None, "too_small", "blurred", "glare"], kinds)
    assert cov == {
        "faces": 6,
        "read": 2,
        "not_read": {"too_small": 1, "blurred": 2, "glare": 1},
    }
    assert cov["read"] + sum(cov["not_read"].values()) == cov["faces"]
