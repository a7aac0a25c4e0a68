"""Pure aggregation maths (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from classroom import aggregates
from classroom.aggregates import FaceRow, FrameRow
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
        FaceRow(at(0.5), "happy"),
        FaceRow(at(1.5), "happy"),
        FaceRow(at(3.0), "sad"),
        FaceRow(at(3.0), "sad"),
        FaceRow(at(10.0), "surprise"),
    ]
    points = aggregates.timeline(frames, faces, start=T0, end=at(12), bucket_s=5, order=EXPRESSIONS)
    assert [p["t"] for p in points] == [T0.isoformat(), at(5).isoformat(), at(10).isoformat()]
    assert [p["faces"] for p in points] == [3, 0, 1]
    assert points[0]["mix"]["happy"] == 0.5 and points[0]["mix"]["sad"] == 0.5
    assert points[1]["mix"] == {}
    assert points[2]["mix"]["surprise"] == 1.0


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


def test_timeline_ignores_rows_outside_and_handles_empty_ranges():
    assert aggregates.timeline([], [], start=at(10), end=at(5), bucket_s=5) == []
    points = aggregates.timeline(
        [frame(1, -1, 3), frame(1, 30, 3)], [], start=T0, end=at(4.9), bucket_s=5
    )
    assert points == [{"t": T0.isoformat(), "faces": 0, "mix": {}}]


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
