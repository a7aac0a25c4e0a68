"""Tiled multi-scale detection: tiling, IoU, NMS and mapping maths with fake detectors (no model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from inference_worker.detection import (
    SOURCE_SETTINGS,
    SOURCES,
    TiledFaceDetector,
    TileGrid,
    TilingSettings,
    context_window,
    iou_matrix,
    nms,
    source_settings,
    tile_windows,
)
from inference_worker.pipeline import Detection, FaceDetector
from tests.inference_worker.worker_fakes import FakeDetector


class BlobDetector:
    """Finds the white square(s) of a synthetic frame, like a scale-limited face detector.

    A blob counts as a face only when its side is at least ``min_fraction`` of the input's
    longer side (BlazeFace likewise misses faces that are small relative to the frame). Boxes
    are the blob's exact bounds; keypoints are its four corners and its centre twice. With
    ``whole_only=False`` a blob cut by the input's border is reported too (BlazeFace boxes the
    visible half of a cut face).
    """

    def __init__(self, min_fraction: float = 0.0, whole_only: bool = True):
        self.min_fraction = min_fraction
        self.whole_only = whole_only
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        self.calls += 1
        self.shapes.append(rgb.shape)
        mask = rgb[..., 0] > 127
        found = []
        for label in _components(mask):
            ys, xs = np.nonzero(label)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            cut = x0 == 0 or y0 == 0 or x1 == mask.shape[1] or y1 == mask.shape[0]
            if cut and self.whole_only:
                continue  # cut by the input border: not a whole face
            if max(x1 - x0, y1 - y0) < self.min_fraction * max(mask.shape):
                continue
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            keypoints = ((x0, y0), (x1, y0), (cx, cy), (cx, cy), (x0, y1), (x1, y1))
            found.append(
                Detection(
                    box=(float(x0), float(y0), float(x1 - x0), float(y1 - y0)),
                    score=0.9,
                    keypoints=tuple((float(a), float(b)) for a, b in keypoints),
                )
            )
        return found


def _components(mask: np.ndarray) -> list[np.ndarray]:
    import cv2

    count, labels = cv2.connectedComponents(mask.astype(np.uint8))
    return [labels == i for i in range(1, count)]


def _frame(width: int, height: int, squares: list[tuple[int, int, int]]) -> np.ndarray:
    rgb = np.zeros((height, width, 3), np.uint8)
    for x, y, side in squares:
        rgb[y : y + side, x : x + side] = 255
    return rgb


# --- tile windows ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "cols", "rows", "overlap"),
    [
        (640, 352, 2, 2, 0.25),
        (640, 352, 3, 3, 0.25),
        (1000, 1000, 4, 4, 0.25),
        (101, 37, 5, 3, 0.5),
    ],
)
def test_tiles_cover_the_frame_with_the_requested_overlap(width, height, cols, rows, overlap):
    grid = TileGrid(cols, rows, overlap)
    windows = tile_windows(width, height, grid)
    assert len(windows) == cols * rows
    covered = np.zeros((height, width), bool)
    sizes = {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows}
    assert len(sizes) == 1  # all tiles have one size
    ((tw, th),) = sizes
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({w[0] for w in windows})
    ys = sorted({w[1] for w in windows})
    assert xs[0] == 0 and xs[-1] + tw == width and ys[0] == 0 and ys[-1] + th == height
    for a, b in zip(xs, xs[1:], strict=False):
        assert a + tw - b >= overlap * tw - 1  # neighbours share at least the overlap
    for a, b in zip(ys, ys[1:], strict=False):
        assert a + th - b >= overlap * th - 1


def test_a_one_by_one_grid_is_the_whole_frame():
    assert tile_windows(640, 480, TileGrid(1, 1)) == [(0, 0, 640, 480)]


@pytest.mark.parametrize(("cols", "rows", "overlap"), [(0, 1, 0.2), (1, -1, 0.2), (2, 2, 1.0)])
def test_bad_tile_grids_are_rejected(cols, rows, overlap):
    with pytest.raises(ValueError):
        TileGrid(cols, rows, overlap)


def test_tile_windows_reject_an_empty_frame():
    with pytest.raises(ValueError):
        tile_windows(0, 10, TileGrid(2, 2))


# --- IoU and NMS ------------------------------------------------------------------------------


def test_iou_of_known_boxes():
    a = [(0, 0, 10, 10)]
    b = [(0, 0, 10, 10), (5, 0, 10, 10), (20, 20, 5, 5), (0, 0, 0, 0)]
    iou = iou_matrix(a, b)
    assert iou.shape == (1, 4)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0, 0.0])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


def test_nms_keeps_the_best_of_each_cluster_by_descending_score():
    boxes = [(0, 0, 10, 10), (1, 1, 10, 10), (50, 50, 10, 10), (51, 50, 10, 10), (100, 0, 5, 5)]
    scores = [0.6, 0.9, 0.7, 0.5, 0.8]
    assert nms(boxes, scores, 0.3) == [1, 4, 2]


def test_nms_threshold_is_strict_and_ties_keep_the_earlier_box():
    boxes = [(0, 0, 10, 10), (5, 0, 10, 10)]  # IoU exactly 1/3
    assert nms(boxes, [0.5, 0.5], 1 / 3) == [0, 1]
    assert nms(boxes, [0.5, 0.5], 0.3) == [0]
    assert nms([], [], 0.3) == []


def test_nms_rejects_bad_input():
    with pytest.raises(ValueError):
        nms([(0, 0, 1, 1)], [0.5, 0.6], 0.3)
    with pytest.raises(ValueError):
        nms([(0, 0, 1, 1)], [0.5], 1.5)


# --- the tiled detector -----------------------------------------------------------------------


def test_webcam_settings_are_one_whole_frame_pass():
    fake = FakeDetector([Detection(box=(10.0, 10.0, 20.0, 20.0), score=0.9)])
    detector = TiledFaceDetector(fake, source_settings("webcam"))
    assert isinstance(detector, FaceDetector)
    out = detector.detect(np.zeros((48, 64, 3), np.uint8))
    assert fake.calls == 1 and fake.shapes == [(48, 64, 3)]
    assert out == fake.detections


def test_tiles_find_a_face_too_small_for_the_whole_frame_and_map_it_back():
    rgb = _frame(640, 352, [(402, 201, 20)])  # 20 px: 3% of the frame, 8% of a 3x3 tile (256 px)
    blob = BlobDetector(min_fraction=0.07)
    assert blob.detect(rgb) == []
    settings = TilingSettings(grids=(TileGrid(3, 3),))
    found = TiledFaceDetector(blob, settings).detect(rgb)
    assert len(found) == 1  # seen by several overlapping tiles, merged by NMS
    assert found[0].box == pytest.approx((402, 201, 20, 20))
    assert found[0].keypoints[0] == pytest.approx((402, 201))
    assert found[0].keypoints[5] == pytest.approx((422, 221))
    assert blob.calls == 1 + 1 + 9


def test_small_tiles_are_upscaled_and_mapped_back():
    rgb = _frame(200, 120, [(120, 70, 10)])
    blob = BlobDetector()
    settings = TilingSettings(whole_frame=False, grids=(TileGrid(2, 2),), min_tile_side=192)
    found = TiledFaceDetector(blob, settings).detect(rgb)
    assert all(min(shape[:2]) >= 191 for shape in blob.shapes)  # every tile upscaled
    assert len(found) == 1
    assert found[0].box == pytest.approx((120, 70, 10, 10), abs=1.0)


def test_large_frames_are_downscaled_for_the_tiles_only():
    rgb = _frame(2000, 1000, [(1500, 600, 40)])
    blob = BlobDetector()
    settings = TilingSettings(grids=(TileGrid(2, 2),), max_side=1000)
    found = TiledFaceDetector(blob, settings).detect(rgb)
    assert blob.shapes[0] == (1000, 2000, 3)  # whole frame at full size
    assert all(max(shape[:2]) <= 600 for shape in blob.shapes[1:])
    assert len(found) == 1
    assert found[0].box == pytest.approx((1500, 600, 40, 40), abs=2.0)


def test_scores_below_min_score_are_dropped():
    fake = FakeDetector([Detection(box=(1.0, 1.0, 5.0, 5.0), score=0.3)])
    assert (
        TiledFaceDetector(fake, TilingSettings(min_score=0.4)).detect(
            np.zeros((20, 20, 3), np.uint8)
        )
        == []
    )


def test_verification_keeps_faces_found_again_and_drops_one_off_detections():
    rgb = _frame(640, 352, [(300, 150, 20)])
    real = BlobDetector()

    class OneOff:
        """The blob, plus a spurious box at the same input position in every call."""

        def detect(self, image):
            return real.detect(image) + [Detection(box=(5.0, 5.0, 8.0, 8.0), score=0.5)]

    settings = TilingSettings(verify_context=4.0, verify_min_score=0.3, sure_score=0.95)
    found = TiledFaceDetector(OneOff(), settings).detect(rgb)
    assert [d.box for d in found] == [pytest.approx((300, 150, 20, 20), abs=0.5)]
    # sure detections skip the check
    sure = dataclasses.replace(settings, sure_score=0.4)
    assert len(TiledFaceDetector(OneOff(), sure).detect(rgb)) == 2


def test_detect_rejects_a_non_rgb_frame():
    with pytest.raises(ValueError):
        TiledFaceDetector(FakeDetector()).detect(np.zeros((10, 10), np.uint8))


def test_context_window_is_square_and_zero_padded():
    rgb = np.full((50, 80, 3), 7, np.uint8)
    window, x0, y0 = context_window(rgb, (0, 0, 10, 10), 3.0)
    assert window.shape == (30, 30, 3) and (x0, y0) == (-10, -10)
    assert (window[:10] == 0).all() and (window[:, :10] == 0).all()
    assert (window[10:, 10:] == 7).all()
    with pytest.raises(ValueError):
        context_window(rgb, (0, 0, 10, 10), 0.0)


def test_sources_go_from_fastest_to_most_thorough():
    passes = [SOURCE_SETTINGS[name].passes for name in SOURCES]
    assert passes == sorted(passes) and passes[0] == 1
    assert source_settings(None) == SOURCE_SETTINGS["webcam"]
    assert source_settings(" Room ") == SOURCE_SETTINGS["room"]
    with pytest.raises(ValueError):
        source_settings("drone")


@pytest.mark.parametrize(
    ("width", "height", "settings"),
    [
        (200, 120, TilingSettings(whole_frame=False, grids=(TileGrid(2, 2),), min_tile_side=192)),
        (2000, 1000, TilingSettings(whole_frame=False, grids=(TileGrid(2, 2),), max_side=1000)),
        (
            2000,
            1000,
            TilingSettings(
                whole_frame=False, grids=(TileGrid(3, 3),), max_side=1000, min_tile_side=400
            ),
        ),
    ],
)
def test_every_keypoint_is_mapped_back_to_frame_pixels(width, height, settings):
    """Tiles that are cropped, downscaled and upscaled all give keypoints in FRAME pixels."""
    x, y, side = int(width * 0.6), int(height * 0.55), max(10, width // 50)
    found = TiledFaceDetector(BlobDetector(), settings).detect(
        _frame(width, height, [(x, y, side)])
    )
    assert len(found) == 1
    c = x + side / 2
    expected = [
        (x, y),
        (x + side, y),
        (c, y + side / 2),
        (c, y + side / 2),
        (x, y + side),
        (x + side, y + side),
    ]
    tolerance = 0.1 * side  # resampling blurs the blob's edges by a pixel or two
    for got, want in zip(found[0].keypoints, expected, strict=True):
        assert got == pytest.approx(want, abs=tolerance)


def test_a_box_cut_by_an_inner_tile_edge_is_dropped_but_one_at_the_frame_border_is_kept():
    # Tiles of a 2x1 grid on 200 px: 0-115 and 85-200. The square 108-148 is whole in the
    # second tile and cut at x=115 in the first, which sees a 7 px sliver: a second box.
    rgb = _frame(200, 100, [(108, 30, 40), (0, 30, 30)])
    settings = TilingSettings(whole_frame=False, grids=(TileGrid(2, 1),), edge_margin=None)
    with_halves = TiledFaceDetector(BlobDetector(whole_only=False), settings).detect(rgb)
    dropped = TiledFaceDetector(
        BlobDetector(whole_only=False), dataclasses.replace(settings, edge_margin=0.01)
    ).detect(rgb)
    widths = sorted(round(d.box[2]) for d in dropped)
    assert len(with_halves) == len(dropped) + 1  # the sliver
    assert widths == [30, 40]  # the whole square, and the one touching the frame's left border
