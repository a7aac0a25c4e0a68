"""``python manage.py analyze_media FILE... [--fps F] [--json] [--source S] [--analysis A]``.

Runs exactly what the Celery task runs (:func:`inference_worker.pipeline.analyze_frame` with the
models of :mod:`inference_worker.runtime`) on images and videos, without a server, a broker or a
database. Prints the faces of each sampled frame (box, label, confidence, head yaw/pitch and
whether the face is attentive) and a summary per file. ``--analysis attention`` skips the
expression classifier (what attention-only sessions do).

Face detection uses the most thorough settings, ``--source room`` (whole frame + 4x4 and 5x5
tiles, verified; ~100-150 ms per 640x360 frame on one core), unless told otherwise:
``--source screen`` (whole frame + 2x2 tiles) or ``--source webcam`` (one whole-frame pass, what live frames use);
see :mod:`inference_worker.detection`.

With ``--json`` every line of stdout is one JSON object: one per sampled frame
(``{"file", "frame", "time_s"}`` plus the worker's result dict: ``width``, ``height``,
``faces``, ``timings_ms``), and, last for each file,
``{"file": ..., "summary": {"frames": int, "faces": int, "faces_per_frame": float,
"expressions": {label: share of faces}, "attention": float | None, "read": int,
"not_read": {"too_small": int, "turned_away": int, "blurred": int}}}`` where the shares of the 7
labels sum to 1 (``{}`` when no face was classified), ``read`` counts the faces that passed the
face-quality gate (:mod:`inference_worker.quality`) and ``not_read`` why the others did not and ``attention`` is the share of faces with
a head pose that are attentive (``None`` when no face has one). Each face of a frame line has
the worker's keys, ``yaw_deg``, ``pitch_deg``, ``attentive`` and ``presence`` (the
second-stage face check's score, :mod:`inference_worker.facecheck`) included. Progress bars for
videos go to stderr, never to stdout.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from contracts import QUALITY_ISSUE_LABELS, QUALITY_ISSUES, AnalysisMode
from inference_worker import pipeline, runtime
from inference_worker.blazeface import DETECTOR_MODELS
from inference_worker.detection import SOURCES
from ml.labels import EXPRESSIONS

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
"""Files with these suffixes are read as one still image; anything else as a video first."""

DEFAULT_MEDIA_SOURCE = "room"
"""Detection settings for files: the most thorough (files are not live; recall matters more)."""

ANALYSES: tuple[str, ...] = tuple(mode.value for mode in AnalysisMode)
"""``--analysis`` values, as the sessions' analysis modes: attention = the classifier is not run."""

DEFAULT_FPS = 2.0
"""Frames per second of video sampled by default."""

TEXT_CODECS = frozenset({"ansi", "tty"})
"""FFmpeg codecs that render TEXT files as video (its ``tty`` demuxer opens any text file):
such a "video" is rejected as unreadable media."""


def summarize(analyses: list[pipeline.FrameAnalysis]) -> dict[str, Any]:
    """Summary of a file's analysed frames.

    Args:
        analyses: the analysed (sampled) frames of one file.

    Returns:
        ``{"frames": int, "faces": int, "faces_per_frame": float, "expressions": {label: share},
        "attention": float | None}`` where ``expressions`` holds all 7 labels in FER2013 order
        with their share of the classified faces (summing to 1), or is ``{}`` when no face was
        classified; ``attention`` is the share (``0..1``) of faces with a head pose that are
        attentive, ``None`` when none has a pose; ``"read"``: faces that passed the face-quality
        gate, ``"not_read"``: ``{issue: faces}`` for every issue of
        :data:`contracts.QUALITY_ISSUES`.
    """
    all_faces = [face for analysis in analyses for face in analysis.faces]
    counts = Counter(face.label for face in all_faces if face.label is not None)
    classified = sum(counts.values())
    posed = [face.attentive for face in all_faces if face.attentive is not None]
    frames = len(analyses)
    return {
        "frames": frames,
        "faces": len(all_faces),
        "faces_per_frame": len(all_faces) / frames if frames else 0.0,
        "expressions": (
            {label: counts[label] / classified for label in EXPRESSIONS} if classified else {}
        ),
        "attention": sum(posed) / len(posed) if posed else None,
        "read": sum(face.assessed is not False for face in all_faces),
        "not_read": {
            issue: sum(face.quality_issue == issue for face in all_faces)
            for issue in QUALITY_ISSUES
        },
    }


def coverage_text(summary: dict[str, Any]) -> str:
    """``"expression read on 3 of 4 faces (not read: 1 too small)"`` for :func:`summarize`'s dict."""
    reasons = ", ".join(
        f"{n} {QUALITY_ISSUE_LABELS[issue]}" for issue, n in summary["not_read"].items() if n
    )
    text = f"expression read on {summary['read']} of {summary['faces']} faces"
    return text + (f" (not read: {reasons})" if reasons else "")


def _fourcc(capture: cv2.VideoCapture) -> str:
    """The capture's codec as a lower-case four-character code ("h264", "mjpg", ...)."""
    code = int(capture.get(cv2.CAP_PROP_FOURCC) or 0) & 0xFFFFFFFF
    return code.to_bytes(4, "little").decode("latin-1").strip("\x00 ").lower()


class Command(BaseCommand):
    help = (
        "Run the worker's face + expression pipeline on images and videos and print the faces "
        "of each sampled frame and a summary per file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="images or videos")
        parser.add_argument(
            "--fps",
            type=float,
            default=DEFAULT_FPS,
            help=f"video frames sampled per second of video (default {DEFAULT_FPS:g})",
        )
        parser.add_argument(
            "--json", action="store_true", help="one JSON object per line (frames, then summary)"
        )
        parser.add_argument(
            "--detector",
            choices=sorted(DETECTOR_MODELS),
            default=None,
            help="BlazeFace model (default: the ENGAGEMENT_DETECTOR setting)",
        )
        parser.add_argument(
            "--source",
            choices=SOURCES,
            default=DEFAULT_MEDIA_SOURCE,
            help=f"detection settings (default {DEFAULT_MEDIA_SOURCE}: the most thorough)",
        )
        parser.add_argument(
            "--analysis",
            choices=ANALYSES,
            default="expression",
            help="expression (default: detect, head pose and classify) or attention (no classifier)",
        )
        parser.add_argument(
            "--classifier",
            metavar="PATH",
            default=None,
            help="expression model .tflite/.keras (default: ENGAGEMENT_CLASSIFIER_PATH or shipped)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fps = options["fps"]
        if not fps > 0:
            raise CommandError(f"--fps must be > 0, got {fps}")
        paths = [Path(name) for name in options["files"]]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        self.as_json = options["json"]
        self.classify = options["analysis"] == "expression"
        try:
            self.detector = runtime.get_detector(source=options["source"], kind=options["detector"])
            self.classifier = (
                runtime.get_classifier(options["classifier"]) if self.classify else None
            )
        except (FileNotFoundError, ValueError, ImproperlyConfigured) as exc:
            raise CommandError(f"cannot load the models: {exc}") from exc
        # One-off set-up costs of the first call (graph start, tracing) would otherwise show up
        # in the first frame's timings.
        blank = np.zeros((240, 320, 3), np.uint8)
        self.detector.detect(blank)
        if self.classifier is not None:
            self.classifier.predict_proba([blank[:48, :48]])

        for path in paths:
            analyses = []
            for frame_index, time_s, analysis in self._analyse_file(path, fps):
                analyses.append(analysis)
                self._emit_frame(path, frame_index, time_s, analysis)
            self._emit_summary(path, analyses)

    # --- reading ----------------------------------------------------------------------------

    def _analyse_file(
        self, path: Path, fps: float
    ) -> Iterator[tuple[int, float, pipeline.FrameAnalysis]]:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            yield 0, 0.0, self._analyse_image(path)
            return
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened() or _fourcc(capture) in TEXT_CODECS:
            capture.release()
            # Not a video OpenCV can open: maybe an image with an unusual name.
            yield 0, 0.0, self._analyse_image(path)
            return
        try:
            yield from self._analyse_video(path, capture, fps)
        finally:
            capture.release()

    def _analyse_image(self, path: Path) -> pipeline.FrameAnalysis:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"{path}: cannot read: {exc}") from exc
        try:
            return pipeline.analyze_bytes(
                data, self.detector, self.classifier, classify=self.classify
            )
        except pipeline.FrameDecodeError as exc:
            raise CommandError(f"{path}: not an image or video OpenCV can read ({exc})") from exc

    def _analyse_video(
        self, path: Path, capture: cv2.VideoCapture, fps: float
    ) -> Iterator[tuple[int, float, pipeline.FrameAnalysis]]:
        from tqdm import tqdm

        source_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        if not source_fps > 0:
            source_fps = 25.0  # unknown rate: assume PAL video
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
        step_s = 1.0 / fps
        next_s = 0.0
        sampled = 0
        # Progress goes to the real stderr stream (Django's wrapper would add newlines).
        stream = getattr(self.stderr, "_out", sys.stderr)
        with tqdm(total=total, desc=path.name, unit="frame", file=stream, leave=False) as bar:
            index = 0
            while capture.grab():
                time_s = index / source_fps
                if time_s + 1e-9 >= next_s:
                    start = time.perf_counter()
                    ok, bgr = capture.retrieve()
                    if ok and bgr is not None:
                        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                        decode_ms = (time.perf_counter() - start) * 1000.0
                        analysis = pipeline.analyze_frame(
                            rgb,
                            self.detector,
                            self.classifier,
                            classify=self.classify,
                            decode_ms=decode_ms,
                        )
                        sampled += 1
                        yield index, time_s, analysis
                    while next_s <= time_s + 1e-9:
                        next_s += step_s
                index += 1
                bar.update(1)
        if sampled == 0:
            raise CommandError(f"{path}: no readable video frame")

    # --- output -----------------------------------------------------------------------------

    def _emit_frame(
        self, path: Path, frame_index: int, time_s: float, analysis: pipeline.FrameAnalysis
    ) -> None:
        if self.as_json:
            line = {"file": str(path), "frame": frame_index, "time_s": round(time_s, 3)}
            line.update(analysis.to_dict())
            self.stdout.write(json.dumps(line))
            return
        t = analysis.timings
        self.stdout.write(
            f"{path} frame {frame_index} t={time_s:.2f}s {analysis.width}x{analysis.height}: "
            f"{analysis.face_count} face(s)  [detect {t.detect:.1f} ms, classify "
            f"{t.classify:.1f} ms, total {t.total:.1f} ms]"
        )
        for i, face in enumerate(analysis.faces, start=1):
            x, y, w, h = face.box
            if face.assessed is False:
                expression = f"not read ({QUALITY_ISSUE_LABELS[face.quality_issue]})  "
            elif face.label is None:
                expression = ""
            else:
                expression = f"{face.label} {face.confidence:.2f}  "
            if face.attentive is None:
                pose = "pose n/a"
            else:
                pose = (
                    f"yaw {face.yaw_deg:+.0f} pitch {face.pitch_deg:+.0f} "
                    f"{'attentive' if face.attentive else 'not attentive'}"
                )
            self.stdout.write(
                f"  face {i}: box x={x:.3f} y={y:.3f} w={w:.3f} h={h:.3f}  "
                f"{expression}{pose}  (detector {face.score:.2f}"
                + ("" if face.presence is None else f", face check {face.presence:.2f}")
                + ")"
            )

    def _emit_summary(self, path: Path, analyses: list[pipeline.FrameAnalysis]) -> None:
        summary = summarize(analyses)
        if self.as_json:
            self.stdout.write(json.dumps({"file": str(path), "summary": summary}))
            return
        mix = ", ".join(
            f"{label} {share:.0%}"
            for label, share in sorted(summary["expressions"].items(), key=lambda kv: -kv[1])
            if share > 0
        )
        median_ms = statistics.median(a.timings.total for a in analyses) if analyses else 0.0
        attention = summary["attention"]
        attention_text = "n/a" if attention is None else f"{attention:.0%}"
        self.stdout.write(
            self.style.SUCCESS(
                f"{path}: {summary['frames']} frame(s), {summary['faces']} face(s), "
                f"{summary['faces_per_frame']:.2f} faces/frame; {coverage_text(summary)}; "
                f"expressions: {mix or 'none'}; "
                f"attentive: {attention_text}; median {median_ms:.1f} ms/frame"
            )
        )
