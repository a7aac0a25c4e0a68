"""``manage.py analyze_media`` on real media, with a classifier file the tests control."""

from __future__ import annotations

import io
import json
import math

import cv2
import pytest
from django.core.management import CommandError, call_command

from inference_worker.management.commands.analyze_media import coverage_text, summarize
from inference_worker.pipeline import Face, FrameAnalysis
from ml.labels import EXPRESSIONS
from tests.inference_worker.worker_fakes import FACE_KEYS, TINY_CLASSIFIER

pytestmark = pytest.mark.slow


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "analyze_media", *args, "--classifier", str(TINY_CLASSIFIER), stdout=out, stderr=err
    )
    return out.getvalue(), err.getvalue()


def _check_summary(summary: dict, frames: int) -> None:
    assert set(summary) == {
        "frames",
        "faces",
        "faces_per_frame",
        "expressions",
        "attention",
        "read",
        "not_read",
    }
    assert summary["frames"] == frames
    assert summary["read"] + sum(summary["not_read"].values()) == summary["faces"]
    assert type(summary["faces"]) is int
    assert summary["faces_per_frame"] == pytest.approx(summary["faces"] / frames)
    if summary["faces"]:
        assert set(summary["expressions"]) <= set(EXPRESSIONS)
        assert math.isclose(sum(summary["expressions"].values()), 1.0, abs_tol=1e-9)
        assert all(0.0 <= share <= 1.0 for share in summary["expressions"].values())
    else:
        assert summary["expressions"] == {}


def test_json_output_on_the_webcam_photo(webcam_photo):
    out, _ = _run(str(webcam_photo), "--json")
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert len(lines) == 2
    frame, last = lines
    assert frame["file"] == str(webcam_photo) and frame["frame"] == 0
    assert (frame["width"], frame["height"]) == (1000, 1000)
    assert len(frame["faces"]) == 4
    for face in frame["faces"]:
        assert set(face) == FACE_KEYS
        # Four people looking into their webcams: a head pose each, all facing the screen.
        assert -30.0 < face["yaw_deg"] < 30.0 and -25.0 < face["pitch_deg"] < 25.0
        assert face["attentive"] is True
        # The second-stage face check's score travels with the face: real faces score high.
        assert face["presence"] > 0.5
    assert set(frame["timings_ms"]) == {"decode", "detect", "crop", "classify", "total"}
    assert set(last) == {"file", "summary"} and last["file"] == str(webcam_photo)
    _check_summary(last["summary"], frames=1)
    assert last["summary"]["faces"] == 4
    assert last["summary"]["faces_per_frame"] == 4.0
    assert last["summary"]["attention"] == 1.0


def test_attention_analysis_runs_no_classifier(webcam_photo, monkeypatch):
    from inference_worker import runtime

    def no_classifier(*args, **kwargs):
        raise AssertionError("attention analysis must not load the classifier")

    monkeypatch.setattr(runtime, "get_classifier", no_classifier)
    out, _ = _run(str(webcam_photo), "--json", "--analysis", "attention", "--source", "webcam")
    frame, last = [json.loads(line) for line in out.strip().splitlines()]
    assert len(frame["faces"]) == 4
    for face in frame["faces"]:
        assert (face["probabilities"], face["label"], face["confidence"]) == (None, None, None)
        assert face["attentive"] is True
    assert frame["timings_ms"]["classify"] == 0.0
    assert last["summary"]["expressions"] == {} and last["summary"]["attention"] == 1.0
    text, _ = _run(str(webcam_photo), "--analysis", "attention", "--source", "webcam")
    assert text.count(" attentive  (detector") == 4 and "attentive: 100%" in text


def test_text_output_lists_faces_and_a_summary(webcam_photo):
    out, _ = _run(str(webcam_photo))
    assert "4 face(s)" in out
    assert out.count("  face ") == 4
    assert out.count(" yaw ") == 4 and out.count(" pitch ") == 4
    assert "faces/frame" in out and "expressions:" in out and "attentive: 100%" in out
    assert "expression read on 4 of 4 faces" in out


def test_summary_counts_faces_not_read_by_reason():
    small = Face(
        box=(0.1, 0.1, 0.01, 0.01),
        score=0.9,
        probabilities=None,
        label=None,
        confidence=None,
        assessed=False,
        quality_issue="too_small",
    )
    frames = [FrameAnalysis(width=10, height=10, faces=(_face("happy", True), small, small))]
    summary = summarize(frames)
    assert summary["read"] == 1 and summary["faces"] == 3
    assert summary["not_read"] == {"too_small": 2, "turned_away": 0, "too_dark": 0, "blurred": 0}
    assert summary["expressions"]["happy"] == 1.0  # shares are over the faces read
    assert coverage_text(summary) == "expression read on 1 of 3 faces (not read: 2 too small)"


def test_video_is_sampled_at_the_requested_rate(webcam_photo, tmp_path):
    # 10 frames at 10 fps = 1 s of video; --fps 5 samples t = 0, 0.2, 0.4, 0.6, 0.8
    video = tmp_path / "clip.avi"
    image = cv2.resize(cv2.imread(str(webcam_photo)), (320, 320))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 320))
    assert writer.isOpened()
    for _ in range(10):
        writer.write(image)
    writer.release()
    out, _ = _run(str(video), "--json", "--fps", "5")
    lines = [json.loads(line) for line in out.strip().splitlines()]  # stdout is pure JSON
    frames, last = lines[:-1], lines[-1]
    assert [f["frame"] for f in frames] == [0, 2, 4, 6, 8]
    assert [f["time_s"] for f in frames] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    _check_summary(last["summary"], frames=5)
    assert last["summary"]["faces"] >= 5 * 3


def test_several_files_give_one_summary_each(webcam_photo, group_photo):
    out, _ = _run(str(webcam_photo), str(group_photo), "--json")
    summaries = [line for line in map(json.loads, out.strip().splitlines()) if "summary" in line]
    assert [s["file"] for s in summaries] == [str(webcam_photo), str(group_photo)]


def test_files_use_the_room_detector_unless_told_otherwise(group_photo, monkeypatch):
    from inference_worker import runtime

    sources = []
    real = runtime.get_detector

    def spy(*args, source=None, kind=None):
        assert not args  # by keyword: a kind in first position would be read as a source
        sources.append(source)
        return real(source=source, kind=kind)

    monkeypatch.setattr(runtime, "get_detector", spy)
    room, _ = _run(str(group_photo), "--json")
    webcam, _ = _run(str(group_photo), "--json", "--source", "webcam")
    assert sources == ["room", "webcam"]
    for out in (room, webcam):
        assert json.loads(out.strip().splitlines()[-1])["summary"]["faces"] == 6


def test_unknown_source_is_rejected(webcam_photo):
    with pytest.raises(CommandError):
        _run(str(webcam_photo), "--source", "drone")


def test_missing_file_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        _run(str(tmp_path / "nope.jpg"))


@pytest.mark.parametrize("name", ["broken.jpg", "broken.mp4", "notes.txt"])
def test_unreadable_file_is_a_command_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"definitely not media " * 50)
    with pytest.raises(CommandError, match="not an image or video"):
        _run(str(path))


def test_fps_must_be_positive(webcam_photo):
    with pytest.raises(CommandError, match="--fps"):
        _run(str(webcam_photo), "--fps", "0")


def test_missing_classifier_is_a_command_error(webcam_photo, tmp_path):
    with pytest.raises(CommandError, match="cannot load"):
        call_command("analyze_media", str(webcam_photo), "--classifier", str(tmp_path / "x.tflite"))


def test_summary_of_no_face_has_no_expressions():
    assert summarize([FrameAnalysis(width=10, height=10)]) == {
        "frames": 1,
        "faces": 0,
        "faces_per_frame": 0.0,
        "expressions": {},
        "attention": None,
        "read": 0,
        "not_read": {"too_small": 0, "turned_away": 0, "too_dark": 0, "blurred": 0},
    }
    assert summarize([])["faces_per_frame"] == 0.0


def _face(label, attentive):
    probabilities = None if label is None else tuple(float(x == label) for x in EXPRESSIONS)
    return Face(
        box=(0.1, 0.1, 0.2, 0.2),
        score=0.9,
        probabilities=probabilities,
        label=label,
        confidence=None if label is None else 1.0,
        yaw_deg=None if attentive is None else 0.0,
        pitch_deg=None if attentive is None else 0.0,
        attentive=attentive,
    )


def test_summary_counts_attention_over_faces_with_a_pose():
    frames = [
        FrameAnalysis(width=10, height=10, faces=(_face("happy", True), _face("sad", False))),
        FrameAnalysis(width=10, height=10, faces=(_face("happy", None), _face("happy", True))),
    ]
    summary = summarize(frames)
    assert summary["faces"] == 4 and summary["faces_per_frame"] == 2.0
    assert summary["attention"] == pytest.approx(2 / 3)
    assert summary["expressions"]["happy"] == pytest.approx(0.75)


def test_summary_of_attention_only_faces_has_no_expressions():
    frames = [FrameAnalysis(width=10, height=10, faces=(_face(None, True), _face(None, False)))]
    summary = summarize(frames)
    assert summary["faces"] == 2 and summary["expressions"] == {}
    assert summary["attention"] == 0.5
