"""``python -m inference_worker.bench``: our pipeline vs the seed projects' pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_worker import bench
from inference_worker.bench import STAGES, BenchRow

FACE_BOXES = Path(__file__).resolve().parents[1] / "fixtures" / "face_boxes.json"


def test_webcam_sample_is_one_640x480_jpeg_frame(media_dir):
    data = bench.webcam_sample(media_dir)
    assert data[:2] == b"\xff\xd8"  # JPEG
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr.shape == (480, 640, 3)


def test_missing_media_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ENGAGEMENT_SHARED_DIR"):
        bench.webcam_sample(tmp_path)


def test_videos_are_sampled_at_the_requested_rate(webcam_photo, tmp_path):
    video = tmp_path / "clip.avi"
    image = cv2.resize(cv2.imread(str(webcam_photo)), (160, 160))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 160))
    for _ in range(20):  # 2 s
        writer.write(image)
    writer.release()
    frames = bench.load_frames(video, fps=2.0)
    assert len(frames) == 4  # t = 0, 0.5, 1.0, 1.5
    assert all(f[:2] == b"\xff\xd8" for f in frames)
    assert bench.load_frames(webcam_photo, fps=2.0) == [webcam_photo.read_bytes()]


def test_unreadable_media_is_rejected(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a readable"):
        bench.load_frames(bad, fps=1.0)
    assert bench.main([str(tmp_path / "missing.mp4"), "--no-peer"]) == 2


def _row(pipeline: str, fps: float, faces: int, hits=None) -> BenchRow:
    return BenchRow(
        "a.jpg",
        pipeline,
        2,
        faces,
        dict.fromkeys(STAGES, 1.5),
        fps,
        hits,
        0 if hits is not None else None,
    )


def test_table_shows_every_stage_and_the_speed_up():
    rows = [
        _row("ours (webcam)", 120.0, 4, hits=4),
        _row("peer (haar + m predict)", 10.0, 3, hits=3),
    ]
    table = bench.format_table(rows)
    header, rule, *body = table.splitlines()
    assert header.count("|") == rule.count("|") == body[0].count("|")
    assert all(f"{stage} ms" in header for stage in STAGES)
    assert "| a.jpg | ours (webcam) | 2 | 2.00 |" in table
    assert (
        "a.jpg: speed-up 12.0x (ours 120.0 vs peer 10.0 frames/s); faces found: ours 4, peer 3"
        in table
    )
    assert "annotated faces hit: ours 4 (0 false), peer 3 (0 false)" in table


def test_scoring_against_the_annotations_counts_hits_and_false_positives():
    annotation = next(
        a
        for a in json.loads(FACE_BOXES.read_text())["items"]
        if a["file"] == "group_photo_6_people.jpg"
    )
    boxes = [tuple(b) for b in annotation["boxes"]]
    good = BenchRow(
        "group_photo_6_people.jpg", "ours", 1, 7, first_boxes=boxes + [(0.0, 0.0, 50.0, 50.0)]
    )
    unknown = BenchRow("elsewhere.jpg", "ours", 1, 0)
    bench.score_rows([good, unknown], FACE_BOXES)
    assert (good.hits, good.false_positives) == (len(boxes), 1)
    assert (unknown.hits, unknown.false_positives) == (None, None)


@pytest.mark.slow
def test_our_pipeline_on_the_webcam_sample(capsys):
    assert bench.main(["--webcam-sample", "--no-peer", "--repeats", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (row,) = result["rows"]
    assert row["file"] == bench.WEBCAM_SAMPLE_NAME and row["pipeline"] == "ours (webcam)"
    assert (row["frames"], row["faces"]) == (1, 1)
    ms = row["median_ms"]
    assert set(ms) == set(STAGES) and all(v > 0 for v in ms.values())
    assert ms["total"] >= ms["detect"] + ms["classify"]
    assert row["fps"] > 0 and result["comparisons"] == []
    assert "cores" in result["cpu"] and "AMX" in result["cpu"]  # the machine beside the figures
    assert result["face_check"] is True


@pytest.mark.slow
def test_the_bench_measures_without_the_face_check_when_asked(capsys):
    args = ["--webcam-sample", "--no-peer", "--repeats", "2", "--json", "--no-check"]
    assert bench.main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (row,) = result["rows"]
    assert result["face_check"] is False and row["pipeline"] == "ours (webcam, no check)"
    assert row["faces"] == 1


@pytest.mark.slow
def test_peer_pipeline_runs_keras_predict_on_the_frames_faces(webcam_photo, monkeypatch):
    """The peer row with the shipped .keras model; the cascade is faked (OpenCV 5 ships none)."""

    class FakeCascade:
        def __init__(self, path):
            pass

        def empty(self):
            return False

        def detectMultiScale(self, gray, scale, neighbours):  # noqa: N802 - OpenCV's name
            assert (scale, neighbours) == (1.3, 5) and gray.ndim == 2
            return np.array([[10, 10, 100, 100], [500, 500, 200, 150]])

    monkeypatch.setattr(bench.cv2, "CascadeClassifier", FakeCascade)
    from ml.inference import SHIPPED_DIR

    peer = bench.PeerPipeline(SHIPPED_DIR / "expression_cnn.keras")
    calls = []
    real_predict = peer.model.predict
    monkeypatch.setattr(
        peer.model, "predict", lambda x, **kw: calls.append(x.shape) or real_predict(x, **kw)
    )
    row = bench.run_peer("posed", [webcam_photo.read_bytes()], peer, repeats=2)
    assert (row.frames, row.faces, row.first_boxes[1]) == (1, 2, (500.0, 500.0, 200.0, 150.0))
    assert calls[-1] == (2, peer.height, peer.width, peer.channels)  # one predict per frame
    assert row.fps > 0 and row.median_ms["classify"] > 0


@pytest.mark.slow
def test_missing_haar_cascade_is_a_clear_error(tmp_path, capsys):
    code = bench.main(["--webcam-sample", "--repeats", "1", "--haar", str(tmp_path / "none.xml")])
    assert code == 2
    assert "--haar" in capsys.readouterr().err
