"""Pure tests of ``classroom.tracking``: matching, track life, gallery stability, EMA maths."""

from __future__ import annotations

import math
import random

import pytest

from classroom import tracking
from classroom.tracking import Box, FaceMeasurement, Tracker


def probabilities(rng: random.Random, n: int = 7) -> tuple[float, ...]:
    weights = [rng.random() + 1e-3 for _ in range(n)]
    total = sum(weights)
    return tuple(w / total for w in weights)


def moved(box: Box, dx: float = 0.0, dy: float = 0.0) -> Box:
    return Box(box.x + dx, box.y + dy, box.w, box.h)


# --- geometry and matching ----------------------------------------------------------------------


def test_iou_from_geometry():
    a = Box(0.1, 0.1, 0.2, 0.2)
    assert tracking.iou(a, a) == pytest.approx(1.0)
    assert tracking.iou(a, moved(a, dx=0.5)) == 0.0
    # Shifted right by half its width: intersection 0.1 x 0.2, union 2 * 0.04 - 0.02.
    assert tracking.iou(a, moved(a, dx=0.1)) == pytest.approx(0.02 / 0.06)
    assert tracking.iou(Box(0, 0, 0, 0), Box(0, 0, 0, 0)) == 0.0


def test_centre_distance_is_in_face_sizes_per_axis():
    a = Box(0.1, 0.1, 0.1, 0.2)  # boxes are fractions of width and height
    assert tracking.centre_distance(a, moved(a, dx=0.05)) == pytest.approx(0.5)
    assert tracking.centre_distance(a, moved(a, dy=0.1)) == pytest.approx(0.5)
    assert tracking.centre_distance(a, moved(a, dx=0.1, dy=0.2)) == pytest.approx(math.sqrt(2))
    assert tracking.centre_distance(a, Box(0.1, 0.1, 0.0, 0.0)) > 0


def test_match_prefers_the_highest_overlap_one_to_one():
    track = Box(0.40, 0.40, 0.20, 0.20)
    near = moved(track, dx=0.02)  # IoU ~0.82
    far = moved(track, dx=0.08)  # IoU ~0.43, also above the gate
    assert tracking.match([track], [far, near]) == [None, 0]
    # Two tracks, two faces: each face gets its own track even though both overlap track 0.
    other = moved(track, dx=0.10)
    assert tracking.match([track, other], [far, near]) == [1, 0]


def test_match_falls_back_on_centre_distance_for_a_face_that_moved():
    track = Box(0.40, 0.40, 0.10, 0.10)
    jumped = moved(track, dx=0.07)  # IoU 0.03/0.17 < 0.3, but 0.7 face widths away
    assert tracking.iou(track, jumped) < tracking.MIN_IOU
    assert tracking.match([track], [jumped]) == [0]
    assert tracking.match([track], [moved(track, dx=0.12)]) == [None]  # 1.2 faces away
    shrunk = Box(0.43, 0.43, 0.04, 0.04)  # same centre, 2.5x smaller: another face
    assert tracking.iou(track, shrunk) < tracking.MIN_IOU
    assert tracking.match([track], [shrunk]) == [None]


def test_match_with_nothing():
    assert tracking.match([], [Box(0, 0, 0.1, 0.1)]) == [None]
    assert tracking.match([Box(0, 0, 0.1, 0.1)], []) == []


# --- track life ---------------------------------------------------------------------------------


def test_new_faces_get_the_next_numbers():
    tracker = Tracker(max_age=5.0, tau_s=3.0)
    first = tracker.update([FaceMeasurement(Box(0.1, 0.1, 0.1, 0.1))], now_s=0.0, seq=1)
    second = tracker.update(
        [FaceMeasurement(Box(0.1, 0.1, 0.1, 0.1)), FaceMeasurement(Box(0.6, 0.6, 0.1, 0.1))],
        now_s=1.0,
        seq=2,
    )
    assert [a.number for a in first.assignments] == [1]
    assert [(a.number, a.created) for a in second.assignments] == [(1, False), (2, True)]
    assert tracker.tracks[1].hits == 2 and tracker.tracks[2].hits == 1
    assert tracker.tracks[1].first_seen_s == 0.0 and tracker.tracks[1].last_seq == 2


def test_track_survives_a_brief_miss_then_dies_after_max_age():
    tracker = Tracker(max_age=5.0, tau_s=3.0)
    face = FaceMeasurement(Box(0.3, 0.3, 0.1, 0.1))
    numbers = []
    for t in (0.0, 1.0, 5.9):  # missed for 4.9 s < 5 s
        numbers.append(tracker.update([face], now_s=t, seq=int(t * 10)).assignments[0].number)
    assert numbers == [1, 1, 1]
    late = tracker.update([face], now_s=11.0, seq=110).assignments[0]  # 5.1 s after the last
    assert (late.number, late.created) == (2, True)
    assert not tracking.is_alive(tracker.tracks[1], 11.0, 5.0)


def test_max_age_is_at_least_three_frame_intervals():
    assert tracking.max_age_s(5.0, 1.0) == 5.0
    assert tracking.max_age_s(5.0, 10.0) == pytest.approx(3 * 10.0)
    tracker = Tracker(max_age=tracking.max_age_s(5.0, 10.0), tau_s=3.0)
    face = FaceMeasurement(Box(0.3, 0.3, 0.1, 0.1))
    assert [
        tracker.update([face], now_s=t, seq=i).assignments[0].number
        for i, t in enumerate((0.0, 10.0, 30.0))  # one frame every 10 s, one missed
    ] == [1, 1, 1]


def gallery_boxes(rng: random.Random, jitter: float) -> dict[int, Box]:
    """A 3x3 video-call gallery: one face per tile, tile (r, c) -> key 3r + c."""
    boxes = {}
    for r in range(3):
        for c in range(3):
            x = c / 3 + 0.11 + rng.gauss(0, jitter)
            y = r / 3 + 0.09 + rng.gauss(0, jitter)
            w = 0.11 * (1 + rng.gauss(0, 0.05))
            boxes[3 * r + c] = Box(x, y, w, w * 1.3)
    return boxes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_person_of_a_screen_shared_gallery_stays_one_track(seed):
    rng = random.Random(seed)
    tracker = Tracker(max_age=5.0, tau_s=3.0)
    number_of: dict[int, set[int]] = {key: set() for key in range(9)}
    t = 0.0
    previous: dict[int, Box] = {}
    for seq in range(1, 31):
        t += rng.uniform(0.8, 1.3)  # 1 fps with arrival jitter
        boxes = gallery_boxes(rng, jitter=0.006)
        if 10 <= seq <= 12:
            del boxes[4]  # the centre tile's face is missed for 3 frames (looked down)
        if seq == 20:
            boxes[2] = moved(boxes[2], dx=0.08)  # a person leans for one frame
            # ... so far that only the centre-distance fallback can match it (both ways).
            assert tracking.iou(previous[2], boxes[2]) < tracking.MIN_IOU
        if seq == 21:
            assert tracking.iou(previous[2], boxes[2]) < tracking.MIN_IOU
        previous.update(boxes)
        keys = list(boxes)
        rng.shuffle(keys)  # the detector's order is not stable
        step = tracker.update([FaceMeasurement(boxes[k]) for k in keys], now_s=t, seq=seq)
        for key, assignment in zip(keys, step.assignments, strict=True):
            number_of[key].add(assignment.number)
    assert all(len(numbers) == 1 for numbers in number_of.values()), number_of
    assert sorted(n for numbers in number_of.values() for n in numbers) == list(range(1, 10))
    assert sorted(track.hits for track in tracker.tracks.values()) == [27] + [30] * 8


# --- smoothing ----------------------------------------------------------------------------------


def test_ema_alpha():
    assert tracking.ema_alpha(0.0, 3.0) == 0.0
    assert tracking.ema_alpha(3.0, 3.0) == pytest.approx(1 - math.exp(-1))
    assert tracking.ema_alpha(-1.0, 3.0) == 0.0
    assert tracking.ema_alpha(1.0, 0.0) == 1.0


def test_ema_of_a_constant_input_decays_with_elapsed_time_only():
    """Semigroup property: two gaps dt1, dt2 forget as much as one gap dt1 + dt2."""
    x = (0.0, 1.0)
    start = (1.0, 0.0)
    two_steps = tracking.ema_update(tracking.ema_update(start, x, 0.4, 2.0), x, 1.7, 2.0)
    one_step = tracking.ema_update(start, x, 2.1, 2.0)
    assert two_steps == pytest.approx(one_step)
    assert one_step[0] == pytest.approx(math.exp(-2.1 / 2.0))


def test_tracker_ema_matches_the_closed_form():
    """s_n = sum_i w_i x_i with w_1 = e^{-(t_n - t_1)/tau}, w_i = (1 - e^{-dt_i/tau}) e^{-(t_n - t_i)/tau}."""
    rng = random.Random(7)
    tau = 2.5
    tracker = Tracker(max_age=10.0, tau_s=tau)
    times, values = [], []
    t = 100.0
    for seq in range(1, 13):
        t += rng.uniform(0.2, 3.0)
        values.append(probabilities(rng))
        times.append(t)
        box = Box(0.4 + rng.gauss(0, 0.005), 0.4, 0.1, 0.1)
        step = tracker.update([FaceMeasurement(box, values[-1])], now_s=t, seq=seq)
    expected = [math.exp(-(times[-1] - times[0]) / tau) * v for v in values[0]]
    for i in range(1, len(values)):
        weight = (1 - math.exp(-(times[i] - times[i - 1]) / tau)) * math.exp(
            -(times[-1] - times[i]) / tau
        )
        expected = [e + weight * v for e, v in zip(expected, values[i], strict=True)]
    smoothed = step.assignments[0].smoothed
    assert smoothed == pytest.approx(expected, rel=1e-9)
    assert tracker.tracks[1].smoothed == smoothed
    assert sum(smoothed) == pytest.approx(1.0)
    assert smoothed != pytest.approx(values[-1])  # it is not the raw value


def test_first_observation_of_a_track_is_its_raw_value():
    tracker = Tracker(max_age=5.0, tau_s=3.0)
    raw = probabilities(random.Random(1))
    assert tracker.update(
        [FaceMeasurement(Box(0.2, 0.2, 0.1, 0.1), raw)], now_s=0.0, seq=1
    ).assignments[0].smoothed == pytest.approx(raw)


def test_late_frame_is_matched_but_does_not_move_the_track_back():
    rng = random.Random(3)
    tau = 3.0
    tracker = Tracker(max_age=5.0, tau_s=tau)
    box = Box(0.3, 0.3, 0.1, 0.1)
    p1, p2, p3, p4 = (probabilities(rng) for _ in range(4))
    tracker.update([FaceMeasurement(box, p1)], now_s=10.0, seq=1)
    tracker.update([FaceMeasurement(moved(box, dx=0.01), p3)], now_s=12.0, seq=3)
    after_3 = tracker.tracks[1]
    late = tracker.update([FaceMeasurement(moved(box, dx=0.005), p2)], now_s=11.0, seq=2)
    assert late.assignments[0].number == 1 and late.assignments[0].late
    assert late.assignments[0].smoothed == after_3.smoothed
    state = tracker.tracks[1]
    assert (state.box, state.last_seen_s, state.last_seq, state.smoothed) == (
        after_3.box,
        12.0,
        3,
        after_3.smoothed,
    )
    assert state.hits == 3
    # The next frame is smoothed from the newest state, over the gap from t = 12, not 11.
    nxt = tracker.update([FaceMeasurement(box, p4)], now_s=13.0, seq=4)
    assert nxt.assignments[0].smoothed == pytest.approx(
        tracking.ema_update(after_3.smoothed, p4, 1.0, tau)
    )


def test_late_frame_older_than_a_track_start_moves_first_seen_back():
    tracker = Tracker(max_age=5.0, tau_s=3.0)
    box = Box(0.3, 0.3, 0.1, 0.1)
    tracker.update([FaceMeasurement(box)], now_s=10.0, seq=2)
    tracker.update([FaceMeasurement(box)], now_s=9.0, seq=1)
    assert (tracker.tracks[1].first_seen_s, tracker.tracks[1].last_seen_s) == (9.0, 10.0)


def test_attention_only_detections_are_tracked_without_smoothing():
    tracker = Tracker(max_age=5.0, tau_s=3.0)
    box = Box(0.3, 0.3, 0.1, 0.1)
    steps = [tracker.update([FaceMeasurement(box)], now_s=float(t), seq=t) for t in range(3)]
    assert [s.assignments[0].number for s in steps] == [1, 1, 1]
    assert all(s.assignments[0].smoothed is None for s in steps)
    assert tracker.tracks[1].smoothed is None and tracker.tracks[1].hits == 3


def test_argmax_label_takes_the_first_on_a_tie():
    labels = ("a", "b", "c")
    assert tracking.argmax_label((0.2, 0.5, 0.3), labels) == "b"
    assert tracking.argmax_label((0.4, 0.2, 0.4), labels) == "a"
    with pytest.raises(ValueError):
        tracking.argmax_label((1.0,), labels)


def test_ema_update_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        tracking.ema_update((0.5, 0.5), (1.0,), 1.0, 3.0)
