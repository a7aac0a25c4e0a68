"""Cross-frame batching of the classifier for thread-pool (GPU) workers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from inference_worker.batching import BatchingClassifier


class CountingModel:
    """Row i of a call = the mean pixel of crop i in every column; records each call's size."""

    def __init__(self, delay_s: float = 0.0):
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def predict_proba(self, faces):
        faces = list(faces)
        self.sizes.append(len(faces))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        return np.array([[float(f.mean())] * 7 for f in faces], np.float32)


def _crop(value: int) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


def _run_concurrently(classifier, requests: list[list[np.ndarray]]) -> list[np.ndarray]:
    barrier = threading.Barrier(len(requests))

    def call(crops):
        barrier.wait()
        return classifier.predict_proba(crops)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(call, requests))


def test_concurrent_frames_share_one_model_call_and_get_their_own_rows():
    model = CountingModel()
    batcher = BatchingClassifier(model, max_batch_size=8, max_wait_ms=500)
    requests = [[_crop(10 * i + j) for j in range(2)] for i in range(4)]  # 4 frames, 2 faces each
    try:
        results = _run_concurrently(batcher, requests)
    finally:
        batcher.close()
    assert model.sizes == [8]  # the batch filled up: one call, long before the 500 ms wait
    assert model.threads == {"classifier-batcher"}
    for crops, rows in zip(requests, results, strict=True):
        assert rows.shape == (2, 7)
        np.testing.assert_array_equal(rows[:, 0], [c.mean() for c in crops])
    assert (batcher.batches, batcher.faces) == (1, 8)


def test_a_lone_frame_waits_at_most_max_wait():
    model = CountingModel()
    batcher = BatchingClassifier(model, max_batch_size=64, max_wait_ms=30)
    try:
        start = time.perf_counter()
        rows = batcher.predict_proba([_crop(7)])
        waited_ms = (time.perf_counter() - start) * 1000
    finally:
        batcher.close()
    assert rows[0, 0] == 7.0 and model.sizes == [1]
    assert 25 <= waited_ms < 500


def test_batches_never_exceed_the_size_and_never_split_a_frame():
    model = CountingModel(delay_s=0.01)
    batcher = BatchingClassifier(model, max_batch_size=7, max_wait_ms=50)
    requests = [[_crop(i)] * 3 for i in range(6)] + [[_crop(99)] * 9]  # the last is oversized
    try:
        results = _run_concurrently(batcher, requests)
    finally:
        batcher.close()
    assert sum(model.sizes) == 27
    assert all(size <= 7 or size == 9 for size in model.sizes)
    assert all(size % 3 == 0 for size in model.sizes if size != 9)  # whole frames only
    assert len(model.sizes) < len(requests)  # some frames were batched together
    for crops, rows in zip(requests, results, strict=True):
        np.testing.assert_array_equal(rows[:, 0], [c.mean() for c in crops])


def test_no_crops_means_no_call():
    model = CountingModel()
    batcher = BatchingClassifier(model)
    assert batcher.predict_proba([]).shape == (0, 7)
    assert model.sizes == [] and batcher._thread is None


def test_a_model_error_reaches_every_caller_of_that_batch_and_the_batcher_survives():
    class Flaky(CountingModel):
        def predict_proba(self, faces):
            faces = list(faces)
            if any(f.mean() == 13 for f in faces):
                raise RuntimeError("boom")
            return super().predict_proba(faces)

    batcher = BatchingClassifier(Flaky(), max_batch_size=2, max_wait_ms=1000)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(batcher.predict_proba, [_crop(v)]) for v in (13, 14)]
            errors = [f.exception(timeout=10) for f in futures]
        assert all(isinstance(e, RuntimeError) for e in errors)
        assert batcher.predict_proba([_crop(3), _crop(4)])[:, 0].tolist() == [3.0, 4.0]
    finally:
        batcher.close()


def test_a_wrong_output_shape_is_an_error_for_the_caller():
    class Short(CountingModel):
        def predict_proba(self, faces):
            return np.zeros((1, 7), np.float32)

    batcher = BatchingClassifier(Short(), max_batch_size=2, max_wait_ms=0)
    try:
        with pytest.raises(ValueError, match="shape"):
            batcher.predict_proba([_crop(1), _crop(2)])
    finally:
        batcher.close()


def test_closed_batcher_refuses_work_and_bad_settings_are_rejected():
    batcher = BatchingClassifier(CountingModel())
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict_proba([_crop(1)])
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingClassifier(CountingModel(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        BatchingClassifier(CountingModel(), max_wait_ms=-1)


@pytest.mark.slow
def test_real_litert_model_across_threads_equals_unbatched(webcam_photo):
    """The shipped LiteRT classifier: batched across 8 threads == one frame at a time (1e-5)."""
    import cv2

    from ml.inference import ExpressionClassifier

    model = ExpressionClassifier.load()
    rgb = cv2.cvtColor(cv2.imread(str(webcam_photo)), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(4)
    requests = []
    for _ in range(8):
        crops = []
        for _ in range(int(rng.integers(1, 4))):
            x, y = (int(v) for v in rng.integers(0, 700, 2))
            side = int(rng.integers(40, 300))
            crops.append(rgb[y : y + side, x : x + side])
        requests.append(crops)
    unbatched = [model.predict_proba(crops) for crops in requests]
    batcher = BatchingClassifier(model, max_batch_size=64, max_wait_ms=200)
    try:
        batched = _run_concurrently(batcher, requests)
    finally:
        batcher.close()
    assert batcher.batches < len(requests)
    for got, want in zip(batched, unbatched, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
