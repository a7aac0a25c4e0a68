"""Unit tests of simulate_class and its shared client helpers (``classroom.management.simulation``):
frame packing (``contracts.encode_frame``, which the command sends), scaling, frame loading,
join-error parsing.

The end-to-end run (real server, worker and dashboard) belongs to the integration tests.
"""

import struct

import cv2
import numpy as np
import pytest
from django.core.management import CommandError, call_command

from classroom.management.commands.simulate_class import format_update
from classroom.management.simulation import (
    MAX_WIDTH_PX,
    encode_jpeg,
    load_frames,
    origin_of,
    parse_join_error,
    scale_to_width,
    scaled_size,
    ws_base,
)
from contracts import encode_frame


def test_encode_frame_header_bytes():
    message = encode_frame(1, 1_700_000_000_123.5, b"\xff\xd8JPEG")

    assert message[:4] == b"\x00\x00\x00\x01"  # seq, uint32 big-endian
    assert message[4:12] == struct.pack(">d", 1_700_000_000_123.5)  # captured_at, float64 BE
    assert message[4:12] == bytes.fromhex("4278bcfe5687b800")
    assert message[12:] == b"\xff\xd8JPEG"
    assert len(message) == 12 + 6


def test_encode_frame_max_seq_and_overflow():
    assert encode_frame(2**32 - 1, 0.0, b"")[:4] == b"\xff\xff\xff\xff"
    with pytest.raises(struct.error):
        encode_frame(2**32, 0.0, b"")


@pytest.mark.parametrize(
    ("size", "max_width", "expected"),
    [
        ((1280, 720), 640, (640, 360)),
        ((2048, 1536), 640, (640, 480)),
        ((640, 352), 640, (640, 352)),  # already at the limit
        ((320, 240), 640, (320, 240)),  # never upscaled
        ((1001, 333), 640, (640, 213)),  # 333 * 640 / 1001 = 212.9
        ((1920, 1080), 1280, (1280, 720)),  # screen-share limit
        ((5000, 3), 640, (640, 1)),  # at least one pixel high
    ],
)
def test_scaled_size(size, max_width, expected):
    assert scaled_size(*size, max_width=max_width) == expected


def test_scale_to_width_resizes_wide_images_and_keeps_narrow_ones():
    wide = np.zeros((720, 1280, 3), np.uint8)
    narrow = np.zeros((240, 320, 3), np.uint8)

    assert scale_to_width(wide).shape == (360, 640, 3)
    assert scale_to_width(narrow) is narrow


def test_encode_jpeg_magic_bytes():
    jpeg = encode_jpeg(np.full((48, 64, 3), 128, np.uint8))

    assert jpeg[:3] == b"\xff\xd8\xff"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)


def test_load_frames_image_is_scaled_to_640(tmp_path):
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), np.full((900, 1600, 3), 200, np.uint8))

    frames = load_frames(path, interval_s=1.0, max_frames=10)

    assert len(frames) == 1
    decoded = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (360, MAX_WIDTH_PX, 3)


def test_load_frames_video_samples_every_interval(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (800, 600))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG video")
    for i in range(30):  # 3 s at 10 fps
        writer.write(np.full((600, 800, 3), i * 8, np.uint8))
    writer.release()

    frames = load_frames(path, interval_s=0.5, max_frames=100)

    # frames 0, 5, 10, ..., 25: one per 0.5 s of video
    assert len(frames) == 6
    first, second = (
        cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_GRAYSCALE) for f in frames[:2]
    )
    assert first.shape == (480, 640)
    assert abs(int(second.mean()) - 5 * 8) <= 3
    assert len(load_frames(path, interval_s=0.5, max_frames=2)) == 2


def test_load_frames_rejects_missing_and_unreadable_files(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        load_frames(tmp_path / "missing.jpg", interval_s=1.0, max_frames=1)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(CommandError, match="cannot read image"):
        load_frames(bad, interval_s=1.0, max_frames=1)


def test_parse_join_error_reads_the_join_page_marker():
    html = '<div class="error-summary" role="alert" data-join-error="unknown_code">\n  No session has this join code.\n</div>'

    assert parse_join_error(html) == ("unknown_code", "No session has this join code.")
    assert parse_join_error("<html></html>")[0] == "unknown"


def test_urls_for_websockets():
    assert ws_base("http://127.0.0.1:8000") == "ws://127.0.0.1:8000"
    assert ws_base("https://class.example.org/") == "wss://class.example.org"
    assert origin_of("http://localhost:8000/anything") == "http://localhost:8000"


def test_format_update_line():
    line = format_update(
        {
            "status": "live",
            "faces_now": 4,
            "participants": 2,
            "frames_analysed": 9,
            "lag_ms": 85.4,
            "mix": {"neutral": 0.25, "happy": 0.5, "sad": 0.25},
        },
        3.14,
    )
    assert line.startswith("[dashboard +3.1s] live faces_now=4 participants=2 analysed=9 lag=85ms")
    assert line.endswith("mix: happy 50%, neutral 25%, sad 25%")


def test_command_errors_before_any_network(tmp_path):
    with pytest.raises(CommandError, match="media file not found"):
        call_command(
            "simulate_class",
            "--url",
            "http://127.0.0.1:9",
            "--code",
            "ABC",
            "--media",
            str(tmp_path / "x.jpg"),
        )


def test_command_unreachable_url_is_a_clear_error(tmp_path):
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.zeros((10, 10, 3), np.uint8))
    # Port 9 (discard) on localhost: connection refused at once.
    with pytest.raises(CommandError, match="cannot reach http://127.0.0.1:9"):
        call_command(
            "simulate_class",
            "--url",
            "http://127.0.0.1:9",
            "--code",
            "ABC",
            "--media",
            str(image),
            "--timeout",
            "2",
        )
