"""BlazeFace run with LiteRT directly (:class:`inference_worker.blazeface.LiteRTFaceDetector`).

The pieces (input size, anchors, re-dimensioned model, weighted NMS) are checked on their own;
the whole detector against MediaPipe's own Tasks ``FaceDetector`` on the shared media.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_worker.blazeface import (
    BLAZEFACE_SPECS,
    DETECTOR_MODELS,
    LiteRTFaceDetector,
    MediaPipeFaceDetector,
    input_shape,
    redimension_model,
    ssd_anchors,
    weighted_nms,
)
from inference_worker.detection import TileGrid, iou_matrix, tile_windows
from inference_worker.pipeline import decode_image
from inference_worker.recall import load_annotations, read_frame

FULL, SHORT = BLAZEFACE_SPECS[192], BLAZEFACE_SPECS[128]
FACE_BOXES = Path(__file__).resolve().parents[1] / "fixtures" / "face_boxes.json"


@pytest.mark.parametrize(
    ("height", "width", "spec", "expected"),
    [
        (360, 640, FULL, (128, 192)),  # 16:9 -> 108 rows, rounded up to a multiple of 32
        (352, 640, FULL, (128, 192)),
        (480, 640, FULL, (160, 192)),  # 4:3 -> 144 -> 160
        (640, 480, FULL, (192, 160)),  # portrait: the columns shrink
        (500, 500, FULL, (192, 192)),
        (10, 1000, FULL, (32, 192)),  # never under one coarsest stride
        (360, 640, SHORT, (80, 128)),  # 72 -> 80, a multiple of 16
    ],
)
def test_the_input_follows_the_image_aspect(height, width, spec, expected):
    assert input_shape(height, width, spec) == expected


def test_input_shape_refuses_an_empty_image():
    with pytest.raises(ValueError, match="positive"):
        input_shape(0, 640, FULL)


def test_anchors_match_the_models_outputs_and_mediapipes_order():
    full = ssd_anchors(192, 192, FULL)
    assert full.shape == (2304, 2) and full.dtype == np.float32
    assert full[:2].tolist() == [[2.0, 2.0], [6.0, 2.0]]  # row by row, cell centres, stride 4
    assert full[48].tolist() == [2.0, 6.0]
    assert len(ssd_anchors(128, 192, FULL)) == 1536
    short = ssd_anchors(128, 128, SHORT)
    assert short.shape == (896, 2)  # 16x16 cells x 2 + 8x8 cells x 6
    assert short[:3].tolist() == [[4.0, 4.0], [4.0, 4.0], [12.0, 4.0]]  # 2 anchors per cell
    assert short[512:518].tolist() == [[8.0, 8.0]] * 6  # then stride 16, 6 per cell


def test_the_full_range_model_is_re_dimensioned_in_memory():
    from ai_edge_litert.interpreter import Interpreter

    data = DETECTOR_MODELS["full"].read_bytes()
    patched = redimension_model(data, 128, 192, 192)
    assert patched != data
    interpreter = Interpreter(model_content=patched)
    interpreter.resize_tensor_input(0, [1, 128, 192, 3], strict=False)
    interpreter.allocate_tensors()
    interpreter.invoke()
    shapes = sorted(tuple(o["shape"]) for o in interpreter.get_output_details())
    assert shapes == [(1, 1536, 1), (1, 1536, 16)]
    # the shipped file cannot take that input without the patch
    plain = Interpreter(model_content=data)
    plain.resize_tensor_input(0, [1, 128, 192, 3], strict=False)
    with pytest.raises(RuntimeError):
        plain.allocate_tensors()
    with pytest.raises(ValueError, match="does not fit"):
        redimension_model(data, 100, 192, 192)
    short = DETECTOR_MODELS["short"].read_bytes()
    assert redimension_model(short, 80, 128, 128) is short  # no up-sampling layer to patch
    assert redimension_model(data, 192, 192, 192) is data


def test_weighted_nms_blends_overlapping_boxes_by_score():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 10, 10], [50, 50, 10, 10]], dtype=np.float64)
    scores = np.array([0.6, 0.9, 0.7])
    points = np.stack([np.full((6, 2), v) for v in (0.0, 3.0, 55.0)])
    merged = weighted_nms(boxes, scores, points, 0.3)
    assert [score for _, score, _ in merged] == [0.9, 0.7]  # the top score is kept
    box, _, kps = merged[0]
    np.testing.assert_allclose(box, [2 * 0.9 / 1.5, 0, 10, 10])  # mean x = 1.2
    np.testing.assert_allclose(kps, np.full((6, 2), 3 * 0.9 / 1.5))
    np.testing.assert_allclose(merged[1][0], [50, 50, 10, 10])
    assert len(weighted_nms(boxes, scores, points, 0.9)) == 3  # IoU 0.67 is not merged at 0.9


def test_a_bad_file_or_frame_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        LiteRTFaceDetector(tmp_path / "missing.tflite")
    detector = LiteRTFaceDetector(DETECTOR_MODELS["full"])
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(ValueError, match="uint8"):
            detector.detect(bad)
    assert detector.detect(np.zeros((360, 640, 3), np.uint8)) == []
    detector.close()
    assert detector.detect(np.zeros((360, 640, 3), np.uint8)) == []  # rebuilt after close


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "short"])
def test_letterboxed_it_finds_what_mediapipe_finds(kind, media_dir):
    """Square input (MediaPipe's letterbox): the same faces as MediaPipe Tasks, on the whole
    annotated frames and their 4x4 tiles; boxes within a few pixels (MediaPipe's are whole
    pixels), scores within 0.15."""
    annotations, _ = load_annotations(FACE_BOXES)
    reference = MediaPipeFaceDetector(DETECTOR_MODELS[kind], min_confidence=0.3)
    ours = LiteRTFaceDetector(DETECTOR_MODELS[kind], min_confidence=0.3, fit_aspect=False)
    try:
        matched, missed, errors = _compare(reference, ours, annotations[::3], media_dir)
    finally:
        reference.close()
    assert matched >= 100
    assert missed <= 0.05 * (matched + missed), (kind, matched, missed)
    assert np.median(errors) <= 0.06, np.median(errors)  # ~1 px on a 20 px face


def _compare(reference, ours, annotations, media_dir):
    """Match our detections to MediaPipe's on every frame and its 4x4 tiles."""
    matched, missed, errors = 0, 0, []
    for annotation in annotations:
        rgb = read_frame(media_dir / annotation.file, annotation.frame)
        height, width = rgb.shape[:2]
        images = [rgb] + [
            np.ascontiguousarray(rgb[y0:y1, x0:x1])
            for x0, y0, x1, y1 in tile_windows(width, height, TileGrid(4, 4))
        ]
        for image in images:
            want = [d for d in reference.detect(image) if d.score >= 0.4]  # clear of the threshold
            got = ours.detect(image)
            if not want:
                continue
            if not got:
                missed += len(want)
                continue
            overlap = iou_matrix([d.box for d in want], [d.box for d in got])
            for i, det in enumerate(want):
                j = int(overlap[i].argmax())
                if overlap[i, j] < 0.5:
                    missed += 1
                    continue
                matched += 1
                errors.append(np.abs(np.subtract(det.box, got[j].box)).max() / max(det.box[2], 1.0))
                assert abs(det.score - got[j].score) < 0.15, (det, got[j])
    return matched, missed, errors


@pytest.mark.slow
def test_on_a_fitted_input_it_finds_the_photo_faces_with_keypoints(webcam_photo):
    rgb = decode_image(webcam_photo.read_bytes())
    wide = np.ascontiguousarray(rgb[438:1000])  # a 16:9 band with the lower two faces
    detector = LiteRTFaceDetector(DETECTOR_MODELS["full"], fit_aspect=True)
    assert input_shape(*wide.shape[:2], FULL) == (128, 192)
    found = detector.detect(wide)
    assert len(found) == 2
    assert set(detector._models) == {(192, 192), (128, 192)}  # built for the smaller input
    for det in found:
        x, y, w, h = det.box
        assert 0.5 <= det.score <= 1.0 and 120 < w < 240 and abs(w - h) < 0.2 * w
        assert 150 <= y <= 260  # 620-660 px down the photo, 438 px of it cut off

        (rx, ry), (lx, ly) = det.keypoints[:2]
        assert x <= rx <= x + w and y <= ry <= y + h and x <= lx <= x + w
