"""Unit tests of ``manage.py load_test``: webcam frames cut from a grid picture, percentiles, the
capture -> dashboard latency meter, the summary, and argument errors before any network.

The run against a real server, worker and database is ``tests/e2e/test_load_test.py``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from classroom.management.commands.load_test import (
    LatencyMeter,
    format_summary,
    grid_cells,
    percentiles,
    progress_line,
    summarize,
    webcam_frames,
)
from classroom.management.simulation import SimulatedStudent


def _grid(rows: int, cols: int, cell: tuple[int, int]) -> np.ndarray:
    """A grid image whose cell (r, c) is filled with the value 10 * (r * cols + c) + 5."""
    h, w = cell
    image = np.zeros((rows * h, cols * w, 3), np.uint8)
    for r in range(rows):
        for c in range(cols):
            image[r * h : (r + 1) * h, c * w : (c + 1) * w] = 10 * (r * cols + c) + 5
    return image


def test_grid_cells_are_cut_in_order_and_resized_to_4_3():
    cells = grid_cells(_grid(2, 2, (500, 500)), 2, 2)
    assert [cell.shape for cell in cells] == [(480, 640, 3)] * 4
    # row by row, each cell only from its own picture (the 4:3 crop stays inside the cell)
    assert [int(cell.min()) for cell in cells] == [5, 15, 25, 35]
    assert [int(cell.max()) for cell in cells] == [5, 15, 25, 35]


def test_grid_cells_crop_centre_of_wide_cells():
    image = np.zeros((300, 800, 3), np.uint8)
    image[:, 200:600] = 255  # the centre 400 px: exactly a 4:3 window of a 300-px-high cell
    (cell,) = grid_cells(image, 1, 1, size=(400, 300))
    assert cell.shape == (300, 400, 3) and cell.min() == 255


def test_grid_cells_refuse_an_impossible_grid():
    with pytest.raises(ValueError, match="grid"):
        grid_cells(np.zeros((3, 3, 3), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="grid"):
        grid_cells(np.zeros((30, 30, 3), np.uint8), 0, 1)


def test_default_media_gives_four_webcam_jpegs(webcam_photo):
    frames = webcam_frames(webcam_photo)
    assert len(frames) == 4
    for jpeg in frames:
        assert jpeg[:3] == b"\xff\xd8\xff"
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (480, 640, 3)
    assert len(set(frames)) == 4  # four different pictures


def test_percentiles_match_numpy_linear_interpolation():
    values = [100.0, 10.0, 40.0, 20.0, 30.0]
    assert percentiles(values) == {"p50": 30.0, "p95": 88.0, "p99": 97.6}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    assert percentiles([7.0], (50, 95)) == {"p50": 7.0, "p95": 7.0}


def _student(sent: dict[int, float], rejected=()) -> SimulatedStudent:
    student = SimulatedStudent("http://127.0.0.1:9", "ABC", "s", timeout=1.0)
    student.captured_ms.update(sent)
    student.rejected_seqs.update(rejected)
    student.stats.sent = len(sent)
    return student


def test_latency_meter_counts_each_frame_once_at_the_first_covering_update():
    a = _student({1: 1000.0, 2: 2000.0, 3: 3000.0}, rejected={2})
    b = _student({1: 1500.0, 2: 2500.0})
    meter = LatencyMeter()
    meter.add(7, a)
    meter.add(8, b)

    assert meter.update({"7": {"seq": 1, "captured_at": 1000}}, 1200.0) == 1
    assert meter.latencies_ms == [200.0]
    # seq 3 covers 2 (rejected: never counted) and 3; b's seq 2 covers its seq 1 too
    assert meter.update({"7": {"seq": 3}, "8": {"seq": 2}}, 3400.0) == 3
    assert sorted(meter.latencies_ms) == [200.0, 400.0, 900.0, 1900.0]
    # a repeated "latest" counts nothing again; unknown participants and junk are ignored
    assert meter.update({"7": {"seq": 3}, "99": {"seq": 5}, "x": {"seq": 1}, "8": {}}, 9e9) == 0
    assert meter.update(None, 9e9) == 0
    assert len(meter.latencies_ms) == 4


def test_summary_is_consistent_and_formatted():
    a = _student({1: 1000.0, 2: 2000.0})
    b = _student({1: 1000.0, 2: 2000.0})
    a.stats.acked, b.stats.acked = 2, 1
    b.stats.rejected["rate_limited"] = 1
    a.acked_at_ms.update({1: 1010.0, 2: 2030.0})
    b.acked_at_ms.update({1: 1020.0})
    meter = LatencyMeter()
    meter.add(1, a)
    meter.add(2, b)
    meter.update({"1": {"seq": 2}, "2": {"seq": 1}}, 2300.0)
    last = {
        "frames_received": 4,
        "frames_analysed": 3,
        "frames_dropped": 0,
        "lag_p95_ms": 42.0,
    }
    summary = summarize(
        students=[a, b],
        meter=meter,
        last_update=last,
        dashboard_updates=5,
        streamed_s=2.0,
        fps=1.0,
        session_id="s-1",
    )
    assert summary["frames_sent"] == 4
    assert summary["frames_acked"] == 3 and summary["frames_rejected"] == 1
    assert summary["rejected_by_code"] == {"rate_limited": 1}
    assert summary["frames_analysed"] == 3 and summary["frames_dropped"] == 0
    assert summary["latency_frames"] == 3
    assert summary["latency_ms"]["max"] == 1300.0
    assert summary["latency_ms"]["p50"] == 1300.0
    assert summary["ack_ms"] == {"p50": 20.0, "p95": 29.0}
    assert summary["throughput_fps"] == 1.5 and summary["offered_fps"] == 2.0
    text = format_summary(summary)
    assert "frames rejected     1 (rate_limited: 1)" in text
    assert "p95 1300 ms" in text and "server lag p95      42 ms" in text


def test_progress_line():
    line = progress_line(15.0, 60.0, 450, 449, 440, 0, 212.4)
    assert line.startswith("[######..................]   15/60 s")
    assert "sent 450  acked 449  analysed 440  dropped 0  p95 212 ms" in line
    assert "analysed -  dropped -  p95 -" in progress_line(0.0, 60.0, 0, 0, None, None, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--students", "0"], "--students must be at least 1"),
        (["--students", "2", "--seconds", "0"], "--seconds must be positive"),
        (["--students", "2", "--fps", "6"], "--fps must be within 0.1..5"),
        (["--students", "2", "--fps", "0"], "--fps must be within"),
        (["--students", "2", "--username", "t"], "--username and --password go together"),
        (["--students", "2", "--url", "ftp://x"], "--url must be http"),
        (["--students", "2", "--media", "/nonexistent/x.jpg"], "media file not found"),
    ],
)
def test_argument_errors_before_any_network(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("load_test", *args)


def test_unreachable_server_is_a_clear_error(webcam_photo):
    with pytest.raises(CommandError, match="cannot reach http://127.0.0.1:9"):
        call_command(
            "load_test",
            "--url",
            "http://127.0.0.1:9",
            "--students",
            "1",
            "--username",
            "t",
            "--password",
            "x",
            "--media",
            str(webcam_photo),
            "--timeout",
            "2",
        )


def test_on_device_messages_follow_the_numbers_contract():
    import json

    from classroom.management.commands.load_test import device_messages
    from contracts import parse_device_analysis

    messages = device_messages()
    labels = []
    for seq, message in enumerate(messages):
        parsed = parse_device_analysis(
            json.dumps({**message, "seq": seq, "captured_at": 1.7e12}),
            max_faces=1,
            max_bytes=4096,
        )
        labels.append(parsed.result["faces"][0]["label"])
    assert labels == ["surprise", "happy", "neutral", "angry"]


def test_on_device_load_test_takes_no_media(tmp_path):
    with pytest.raises(CommandError, match="leave out --media"):
        call_command(
            "load_test", "--students", "1", "--on-device", "--media", str(tmp_path / "x.jpg")
        )


def test_bench_on_device_summary_and_its_text():
    from classroom.management.commands.bench_on_device import format_summary, summarize

    timings = [{"detect": d, "crop": 2.0, "classify": 3.0, "total": d + 5.0} for d in range(10, 30)]
    raw = {
        "loadMs": 1234.0,
        "timings": timings,
        "faces": 1,
        "resources": [{"name": "a", "encoded": 100, "decoded": 300}] * 3,
        "heap": 5_000_000,
        "size": [640, 480],
    }
    summary = summarize(raw, "Test CPU, AVX2")
    assert summary["stages_ms"]["detect"] == {"median": 19.5, "p95": 28.0}
    assert summary["stages_ms"]["total"]["median"] == 24.5
    assert summary["download"] == {"resources": 3, "transferred_bytes": 300, "decoded_bytes": 900}
    assert (summary["load_s"], summary["runs"]) == (1.23, 20)
    text = format_summary(summary)
    assert "Test CPU, AVX2" in text and "detect     median 19.5 ms  p95 28.0 ms" in text
    with pytest.raises(ValueError):
        summarize({**raw, "timings": []}, "cpu")
