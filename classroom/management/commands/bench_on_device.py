"""``python manage.py bench_on_device``: what on-device analysis costs in a student's browser.

Against a running server (``make demo``, or ``deploy/load-test.sh``'s stack), a throwaway teacher
(created with the ORM in the database this command is configured with, which must be the
server's) creates and starts an on-device session; a student joins over HTTP; then Debian's
headless Chromium (Playwright, ``--chromium``) opens the student page with that student's cookie,
loads the analysis exactly as the page does (our bundle, the two WASM runtimes and the models,
all from the server), and analyses one webcam frame ``--frames`` times after 3 warm-up runs.

Prints, with the machine's CPU (``ml.complexity.cpu_description``, run in a subprocess since the
web side never imports ``ml``):

* load time of the bundle, runtimes and models (s);
* per stage (``detect``, ``crop`` with the quality gate, ``classify``, ``total``): median and p95
  in ms, as the page's own ``performance.now()`` measures them;
* faces found in the frame;
* what the page downloaded: resources, bytes as transferred (``encodedBodySize``) and decoded;
* the page's JavaScript heap after the runs (``performance.memory.usedJSHeapSize``, Chromium;
  the WASM runtimes' memory is outside it and not measured).

Default frame: the happy face of ``$ENGAGEMENT_SHARED_DIR/media/webcam_posed_expressions_4.jpg``,
cropped to 4:3 and scaled to 640x480 (one face, as ``load_test`` streams it); ``--media`` takes
another image. The session and the throwaway teacher are deleted at the end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from classroom.management.commands.load_test import (
    create_throwaway_teacher,
    default_media_path,
    webcam_frames,
)
from classroom.management.simulation import (
    SimulatedStudent,
    TeacherWatcher,
    client_errors,
    encode_jpeg,
    scale_to_width,
)

CHROMIUM = "/usr/bin/chromium"
WARM_UP_RUNS = 3
STAGES = ("detect", "crop", "classify", "total")

_PAGE_SCRIPT = """async ([jpeg, runs, warmUp]) => {
  const config = JSON.parse(document.getElementById('student-config').textContent);
  const started = performance.now();
  await new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.type = 'module'; s.src = config.ondevice.bundle;
    s.onload = resolve; s.onerror = () => reject(new Error('bundle did not load'));
    document.head.appendChild(s);
  });
  const analyser = await window.ClassMoodOnDevice.createAnalyser(config.ondevice);
  const loadMs = performance.now() - started;
  const bytes = Uint8Array.from(atob(jpeg), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], {type: 'image/jpeg'}));
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width; canvas.height = bitmap.height;
  canvas.getContext('2d', {willReadFrequently: true}).drawImage(bitmap, 0, 0);
  const timings = []; let faces = 0;
  for (let i = 0; i < warmUp + runs; i++) {
    const result = await analyser.analyse(canvas);
    faces = result.faces.length;
    if (i >= warmUp) timings.push(result.timings_ms);
  }
  const resources = performance.getEntriesByType('resource')
    .map((e) => ({name: e.name, encoded: e.encodedBodySize, decoded: e.decodedBodySize}));
  const heap = performance.memory ? performance.memory.usedJSHeapSize : null;
  return {loadMs, timings, faces, resources, heap, size: [canvas.width, canvas.height]};
}"""


def summarize(raw: dict[str, Any], cpu: str) -> dict[str, Any]:
    """The benchmark's figures from what the page returned (see the module docstring).

    Args:
        raw: ``{"loadMs", "timings": [{stage: ms}], "faces", "resources": [{"name",
            "encoded", "decoded"}], "heap", "size"}`` from the page.
        cpu: the machine's description.

    Returns:
        ``{"cpu", "frame", "faces", "runs", "load_s", "stages_ms": {stage: {"median", "p95"}},
        "download": {"resources", "transferred_bytes", "decoded_bytes"}, "js_heap_bytes"}``.

    Raises:
        ValueError: no timing.
    """
    timings = raw["timings"]
    if not timings:
        raise ValueError("no timing")
    stages = {}
    for stage in STAGES:
        values = sorted(float(t[stage]) for t in timings)
        p95 = values[min(len(values) - 1, max(0, round(0.95 * len(values)) - 1))]
        stages[stage] = {"median": round(statistics.median(values), 1), "p95": round(p95, 1)}
    resources = raw["resources"]
    return {
        "cpu": cpu,
        "frame": raw["size"],
        "faces": raw["faces"],
        "runs": len(timings),
        "load_s": round(raw["loadMs"] / 1000.0, 2),
        "stages_ms": stages,
        "download": {
            "resources": len(resources),
            "transferred_bytes": sum(int(r["encoded"]) for r in resources),
            "decoded_bytes": sum(int(r["decoded"]) for r in resources),
        },
        "js_heap_bytes": raw["heap"],
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text lines."""
    lines = [
        "",
        "On-device analysis in headless Chromium",
        f"  CPU        {summary['cpu']}",
        f"  frame      {summary['frame'][0]}x{summary['frame'][1]}, {summary['faces']} face(s), "
        f"{summary['runs']} runs after {WARM_UP_RUNS} warm-up",
        f"  load       {summary['load_s']:.2f} s (bundle, WASM runtimes, models)",
    ]
    for stage, figures in summary["stages_ms"].items():
        lines.append(
            f"  {stage:<10} median {figures['median']:.1f} ms  p95 {figures['p95']:.1f} ms"
        )
    download = summary["download"]
    lines.append(
        f"  download   {download['resources']} files, {download['transferred_bytes'] / 1e6:.1f} MB "
        f"transferred, {download['decoded_bytes'] / 1e6:.1f} MB decoded"
    )
    heap = summary["js_heap_bytes"]
    lines.append(f"  JS heap    {'-' if heap is None else f'{heap / 1e6:.1f} MB'}")
    return "\n".join(lines)


def cpu_description() -> str:
    """The machine's CPU line (``ml.complexity.cpu_description`` in a subprocess), or
    ``"unknown CPU"``."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", "from ml.complexity import cpu_description as d; print(d())"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout.strip() or "unknown CPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"


class Command(BaseCommand):
    help = (
        "Benchmark on-device analysis in headless Chromium against a running server: load time, "
        "ms per stage for one webcam frame, download size and the page's memory."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
        parser.add_argument("--frames", type=int, default=50, help="timed runs (50)")
        parser.add_argument("--media", type=Path, help="an image to analyse (default: one face)")
        parser.add_argument("--chromium", default=CHROMIUM, help=f"the browser ({CHROMIUM})")
        parser.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout, s (30)")
        parser.add_argument("--json", action="store_true", help="also print one JSON line")

    def handle(self, *args, **opts):
        if opts["frames"] < 1:
            raise CommandError("--frames must be at least 1")
        base_url = opts["url"].rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"--url must be http(s)://host[:port], got {opts['url']!r}")
        if not Path(opts["chromium"]).is_file():
            raise CommandError(f"Chromium not found at {opts['chromium']} (--chromium PATH)")
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        jpeg = self._frame(opts["media"])
        teacher, password = create_throwaway_teacher()
        try:
            cookie = asyncio.run(self._join(base_url, teacher.username, password, opts["timeout"]))
            raw = self._run_page(base_url, cookie, jpeg, opts)
        finally:
            teacher.delete()  # cascades to the session and its rows
        summary = summarize(raw, cpu_description())
        self.stdout.write(format_summary(summary))
        if opts["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))

    @staticmethod
    def _frame(media: Path | None) -> bytes:
        if media is None:
            return webcam_frames(default_media_path())[1]  # the happy face
        import cv2

        image = cv2.imread(str(media), cv2.IMREAD_COLOR)
        if image is None:
            raise CommandError(f"cannot read image: {media}")
        return encode_jpeg(scale_to_width(image, 640))

    @staticmethod
    async def _join(base_url: str, username: str, password: str, timeout: float) -> dict:
        watcher = TeacherWatcher(base_url, timeout=timeout, write=lambda line: None)
        student = None
        try:
            with client_errors(base_url):
                await watcher.login(username, password, None)
                session_id = await watcher.create_session(
                    "On-device benchmark", 1.0, analysis="expression", analysis_site="on-device"
                )
                await watcher.start_session(session_id)
                code = (await watcher.session(session_id))["join_code"]
                student = SimulatedStudent(base_url, code, "Benchmark", timeout=timeout)
                await student.join()
            return dict(student.client.cookies.items())
        finally:
            for client in (student, watcher):
                if client is not None:
                    await client.aclose()

    def _run_page(self, base_url: str, cookies: dict, jpeg: bytes, opts) -> dict[str, Any]:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        self.stderr.write(f"analysing one frame {opts['frames']} times in Chromium ...")
        started = time.monotonic()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=opts["chromium"],
                headless=True,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            try:
                context = browser.new_context()
                context.add_cookies(
                    [{"name": k, "value": v, "url": base_url} for k, v in cookies.items()]
                )
                page = context.new_page()
                page.goto(f"{base_url}/student/")
                raw = page.evaluate(
                    _PAGE_SCRIPT,
                    [base64.b64encode(jpeg).decode("ascii"), opts["frames"], WARM_UP_RUNS],
                )
            except PlaywrightError as exc:
                raise CommandError(f"the page failed: {exc}") from exc
            finally:
                browser.close()
        self.stderr.write(f"done in {time.monotonic() - started:.0f} s")
        return raw
