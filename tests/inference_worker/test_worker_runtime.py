"""Runtime loaders and the real BlazeFace detector on real media."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from inference_worker import blazeface, pipeline, runtime
from inference_worker.batching import BatchingClassifier
from inference_worker.pipeline import analyze_bytes, decode_image
from tests.inference_worker.worker_fakes import TINY_CLASSIFIER

SHIPPED_SHA256 = {
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_detection_full_range_sparse.tflite": "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
}


def test_shipped_detector_files_match_their_source():
    for kind, path in blazeface.DETECTOR_MODELS.items():
        assert path.is_file(), kind
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHIPPED_SHA256[path.name]
    assert (blazeface.MODELS_DIR / "LICENSE").is_file()
    source = (blazeface.MODELS_DIR / "SOURCE.md").read_text(encoding="utf-8")
    for name, digest in SHIPPED_SHA256.items():
        assert name in source and digest in source


def test_unknown_detector_kind_is_a_configuration_error(settings, fresh_runtime):
    settings.ENGAGEMENT_DETECTOR = "medium"
    with pytest.raises(ImproperlyConfigured, match="ENGAGEMENT_DETECTOR"):
        runtime.get_detector()


def test_detector_kind_defaults_to_the_setting(settings):
    settings.ENGAGEMENT_DETECTOR = "short"
    assert runtime.detector_kind() == "short"
    assert runtime.detector_kind("full") == "full"


def test_classifier_path_comes_from_the_setting(settings):
    settings.ENGAGEMENT_CLASSIFIER_PATH = ""
    assert runtime.classifier_path() is None  # the shipped model
    settings.ENGAGEMENT_CLASSIFIER_PATH = str(TINY_CLASSIFIER)
    assert runtime.classifier_path() == str(TINY_CLASSIFIER)
    assert runtime.classifier_path("/x.tflite") == "/x.tflite"


def test_classifier_is_loaded_once_per_process(settings, fresh_runtime):
    settings.ENGAGEMENT_CLASSIFIER_PATH = str(TINY_CLASSIFIER)
    first = runtime.get_classifier()
    assert runtime.get_classifier() is first
    assert runtime.get_classifier(TINY_CLASSIFIER) is first
    probs = first.predict_proba([np.zeros((30, 30, 3), np.uint8)])
    assert probs.shape == (1, 7) and probs.dtype == np.float32


def test_missing_classifier_file_raises(fresh_runtime, tmp_path):
    with pytest.raises(FileNotFoundError):
        runtime.get_classifier(tmp_path / "missing.tflite")


@pytest.mark.slow
def test_detector_is_loaded_once_per_process():
    assert runtime.get_detector(kind="full") is runtime.get_detector(kind="full")
    assert runtime.get_detector(kind="short") is not runtime.get_detector(kind="full")
    assert isinstance(runtime.get_detector(), pipeline.FaceDetector)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "short"])
def test_real_detector_finds_the_four_webcam_faces(webcam_photo, kind):
    rgb = decode_image(webcam_photo.read_bytes())
    detections = runtime.get_detector(kind=kind).detect(rgb)
    assert len(detections) == 4
    height, width = rgb.shape[:2]
    quadrants = set()
    for det in detections:
        x, y, w, h = det.box
        assert 0.5 < det.score <= 1.0
        assert 0.1 * width < w < 0.3 * width and 0.1 * height < h < 0.3 * height
        assert det.keypoints is not None and len(det.keypoints) == 6
        for kx, ky in det.keypoints[:4]:  # eyes, nose, mouth lie inside the face box
            assert x <= kx <= x + w and y <= ky <= y + h
        quadrants.add((x + w / 2 > width / 2, y + h / 2 > height / 2))
    assert len(quadrants) == 4  # one face per tile of the 2x2 grid


@pytest.mark.slow
def test_full_range_detector_finds_the_group(group_photo):
    rgb = decode_image(group_photo.read_bytes())
    assert len(runtime.get_detector(kind="full").detect(rgb)) >= 5


@pytest.mark.slow
def test_real_detector_finds_no_face_in_a_blank_frame():
    assert runtime.get_detector(kind="full").detect(np.zeros((480, 640, 3), np.uint8)) == []


@pytest.mark.slow
def test_pipeline_with_real_models_finds_the_four_webcam_faces(webcam_photo, fresh_runtime):
    analysis = analyze_bytes(
        webcam_photo.read_bytes(),
        runtime.get_detector(kind="full"),
        runtime.get_classifier(TINY_CLASSIFIER),
    )
    assert analysis.face_count == 4
    assert (analysis.width, analysis.height) == (1000, 1000)


# Expected labels of the posed grid (``shared/media/README.md``): tile (right?, bottom?) -> label.
POSED = {
    (False, False): "surprise",
    (True, False): "happy",
    (False, True): "sad",
    (True, True): "angry",
}


@pytest.mark.slow
def test_shipped_model_labels_at_least_three_of_the_four_posed_expressions(webcam_photo):
    """End to end with the SHIPPED classifier (``ml/shipped/``): fails until it is exported."""
    from ml.inference import ExpressionClassifier

    classifier = ExpressionClassifier.load()
    analysis = analyze_bytes(
        webcam_photo.read_bytes(), runtime.get_detector(kind="full"), classifier
    )
    assert analysis.face_count == 4
    got = {}
    for face in analysis.faces:
        x, y, w, h = face.box
        got[(x + w / 2 > 0.5, y + h / 2 > 0.5)] = face.label
    assert set(got) == set(POSED)
    correct = [tile for tile, label in POSED.items() if got[tile] == label]
    assert len(correct) >= 3, f"expected {POSED}, got {got}"


def test_unknown_detector_source_is_an_error_naming_the_valid_ones(fresh_runtime):
    for call in (
        lambda: runtime.get_detector("drone"),
        lambda: runtime.get_detector(source="drone"),
        lambda: runtime.get_detector("drone", kind="full"),
    ):
        with pytest.raises(ValueError, match="source") as info:
            call()
        assert all(name in str(info.value) for name in ("webcam", "screen", "room"))


@pytest.mark.slow
def test_detectors_are_cached_per_source(fresh_runtime):
    from inference_worker.detection import SOURCE_SETTINGS, TiledFaceDetector

    webcam = runtime.get_detector("webcam", check=False)
    assert runtime.get_detector(check=False) is webcam
    assert runtime.get_detector(source="webcam", check=False) is webcam
    assert isinstance(webcam, blazeface.LiteRTFaceDetector)  # one fast whole-frame pass
    assert not webcam.fit_aspect and webcam.num_threads == 1  # letterboxed, as MediaPipe does
    screen, room = (
        runtime.get_detector("screen", check=False),
        runtime.get_detector("room", check=False),
    )
    assert runtime.get_detector("screen", check=False) is screen
    assert runtime.get_detector("room", check=False) is room
    assert screen.settings == SOURCE_SETTINGS["screen"] and room.settings == SOURCE_SETTINGS["room"]
    assert isinstance(screen, TiledFaceDetector) and screen.settings.passes == 5
    assert room.settings.passes > screen.settings.passes  # the most thorough
    assert runtime.get_detector(kind="full", check=False) is webcam  # full range is the default


@pytest.mark.slow
def test_detectors_are_forgotten_in_a_forked_child(fresh_runtime):
    import os

    parent = runtime.get_detector("webcam")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        ok = not runtime._detectors and not runtime._classifiers
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert runtime.get_detector("webcam") is parent  # the parent keeps its own


@pytest.mark.slow
@pytest.mark.parametrize("source", ["webcam", "screen", "room"])
def test_every_source_keeps_keypoints_in_frame_pixels(webcam_photo, source, fresh_runtime):
    rgb = decode_image(webcam_photo.read_bytes())
    detections = runtime.get_detector(source).detect(rgb)
    assert len(detections) == 4
    for det in detections:
        x, y, w, h = det.box
        assert det.keypoints is not None and len(det.keypoints) == 6
        for kx, ky in det.keypoints[:4]:  # eyes, nose, mouth inside the face box
            assert x <= kx <= x + w and y <= ky <= y + h
        (rx, _), (lx, _) = det.keypoints[:2]
        assert rx < lx  # the subject's right eye on the image's left


def test_classifier_backend_comes_from_the_setting(settings):
    settings.ENGAGEMENT_CLASSIFIER_BACKEND = "keras"
    assert runtime.classifier_backend() == "keras"
    assert runtime.classifier_backend("litert") == "litert"
    settings.ENGAGEMENT_CLASSIFIER_BACKEND = "onnx"
    with pytest.raises(ImproperlyConfigured, match="ENGAGEMENT_CLASSIFIER_BACKEND"):
        runtime.classifier_backend()


def test_classifier_path_follows_the_backend(settings, tmp_path):
    from ml.inference import SHIPPED_MODEL

    settings.ENGAGEMENT_CLASSIFIER_PATH = ""
    assert runtime.classifier_path(backend="litert") is None
    assert runtime.classifier_path(backend="keras") == str(SHIPPED_MODEL.with_suffix(".keras"))
    assert runtime.classifier_path(tmp_path, backend="keras") == str(
        tmp_path / "expression_cnn.keras"
    )
    with pytest.raises(ImproperlyConfigured, match="keras"):
        runtime.classifier_path(TINY_CLASSIFIER, backend="keras")
    with pytest.raises(ImproperlyConfigured, match="litert"):
        runtime.classifier_path(tmp_path / "model.keras", backend="litert")


def test_batching_is_off_by_default_and_on_by_setting(settings, fresh_runtime):
    settings.ENGAGEMENT_CLASSIFIER_PATH = str(TINY_CLASSIFIER)
    settings.ENGAGEMENT_BATCH_MAX_SIZE = 0
    plain = runtime.get_classifier()
    assert not isinstance(plain, BatchingClassifier)
    settings.ENGAGEMENT_BATCH_MAX_SIZE = 16
    settings.ENGAGEMENT_BATCH_MAX_WAIT_MS = 2.0
    batching = runtime.get_classifier()
    assert isinstance(batching, BatchingClassifier)
    assert (batching.max_batch_size, batching.max_wait_ms) == (16, 2.0)
    assert runtime.get_classifier() is batching
    crops = [np.full((30, 30, 3), v, np.uint8) for v in (0, 120, 255)]
    np.testing.assert_allclose(batching.predict_proba(crops), plain.predict_proba(crops), atol=1e-6)
    settings.ENGAGEMENT_BATCH_MAX_SIZE = -1
    with pytest.raises(ImproperlyConfigured, match="ENGAGEMENT_BATCH_MAX_SIZE"):
        runtime.get_classifier()


@pytest.mark.slow
def test_keras_backend_matches_the_litert_model(settings, fresh_runtime, webcam_photo):
    """The GPU workers' back end (TensorFlow, one tf.function) on the shipped model: same answers."""
    settings.ENGAGEMENT_CLASSIFIER_PATH = ""
    rgb = decode_image(webcam_photo.read_bytes())
    crops = [rgb[y : y + 500, x : x + 500] for y in (0, 500) for x in (0, 500)]
    keras_model = runtime.get_classifier(backend="keras")
    assert keras_model.backend == "keras"
    assert type(keras_model._backend._fn).__name__ == "Function"  # a tf.function, not predict
    litert_model = runtime.get_classifier(backend="litert")
    assert litert_model.backend == "tflite"
    got, want = keras_model.predict_proba(crops), litert_model.predict_proba(crops)
    assert got.shape == (4, 7)
    # The .tflite is quantized (ml/shipped/expression_cnn.json): close, not identical.
    np.testing.assert_allclose(got, want, atol=0.02)
    # Same answer wherever the answer is not a near tie (these crops are not all faces).
    top2 = np.sort(got, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.04
    assert clear.any()
    assert (got.argmax(1) == want.argmax(1))[clear].all()


@pytest.mark.slow
def test_tiled_detectors_are_cached_per_source_and_share_nothing_with_live_frames(fresh_runtime):
    from inference_worker.detection import SOURCE_SETTINGS, TiledFaceDetector

    live = runtime.get_detector(kind="full", check=False)
    screen = runtime.get_detector("screen", kind="full", check=False)
    room = runtime.get_detector("room", kind="full", check=False)
    assert runtime.get_detector("room", kind="full", check=False) is room
    assert isinstance(screen, TiledFaceDetector) and screen.detector is not live
    assert screen.detector.fit_aspect and not live.fit_aspect  # tiles run on a fitted input
    assert isinstance(room, TiledFaceDetector) and room.settings == SOURCE_SETTINGS["room"]
    assert room.detector is not live and room.detector is not screen.detector
    assert room.detector.min_confidence == SOURCE_SETTINGS["room"].detector_min_confidence
    assert runtime.get_detector(check=False) is live


@pytest.mark.slow
def test_the_detector_back_end_and_threads_follow_the_settings(fresh_runtime, settings):
    settings.ENGAGEMENT_DETECTOR_BACKEND = "mediapipe"
    mediapipe = runtime.get_detector(check=False)
    assert isinstance(mediapipe, blazeface.MediaPipeFaceDetector)
    assert isinstance(runtime.get_detector("room", check=False).detector, type(mediapipe))
    settings.ENGAGEMENT_DETECTOR_BACKEND = "litert"
    assert runtime.get_detector("room", check=False).detector.num_threads == 1
    settings.ENGAGEMENT_DETECTOR_THREADS = 2
    two = runtime.get_detector(check=False)
    assert isinstance(two, blazeface.LiteRTFaceDetector) and two.num_threads == 2
    room = runtime.get_detector("room")  # tiles and face check wrap the 2-thread detector
    assert room.detector.detector.num_threads == 2
    settings.ENGAGEMENT_DETECTOR_BACKEND = "onnx"
    with pytest.raises(ImproperlyConfigured, match="ENGAGEMENT_DETECTOR_BACKEND.*litert"):
        runtime.get_detector()
    settings.ENGAGEMENT_DETECTOR_BACKEND = "litert"
    for bad in (0, "two"):
        settings.ENGAGEMENT_DETECTOR_THREADS = bad
        with pytest.raises(ImproperlyConfigured, match="ENGAGEMENT_DETECTOR_THREADS"):
            runtime.get_detector()


@pytest.mark.slow
def test_the_face_check_wraps_every_source_and_follows_the_setting(fresh_runtime, settings):
    from inference_worker.facecheck import CheckedFaceDetector

    checked = {name: runtime.get_detector(name) for name in ("webcam", "screen", "room")}
    for name, detector in checked.items():
        assert isinstance(detector, CheckedFaceDetector)
        assert detector.detector is runtime.get_detector(name, check=False)
        assert detector.check is runtime.get_face_check()  # one landmark model per process
        assert runtime.get_detector(name) is detector
    settings.ENGAGEMENT_FACE_CHECK = False
    assert runtime.get_detector("room") is runtime.get_detector("room", check=False)
    assert runtime.get_detector("room", check=True) is checked["room"]
