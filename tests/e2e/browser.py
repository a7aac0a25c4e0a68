"""Helpers for the browser tests: Debian's headless Chromium with a fake camera, page logs."""

from __future__ import annotations

from pathlib import Path

import cv2

CHROMIUM = "/usr/bin/chromium"


def write_y4m(photo: Path, path: Path, *, size: int = 640, frames: int = 5, fps: int = 10) -> Path:
    """Write a YUV4MPEG2 (4:2:0, JPEG chroma siting) clip of ``photo`` for Chromium's fake camera.

    Args:
        photo: Source image.
        path: Output ``.y4m`` file.
        size: Side of the square output in pixels (the photo is scaled to ``size`` x ``size``).
        frames: Number of (identical) frames; Chromium loops the file.
        fps: Frame rate written in the header.

    Returns:
        ``path``.
    """
    bgr = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    assert bgr is not None, f"cannot read {photo}"
    bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # (size * 3 / 2, size): Y, then U, then V
    assert i420.shape == (size * 3 // 2, size), i420.shape
    payload = i420.tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{size} H{size} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(payload)
    return path


class PageLog:
    """Uncaught script errors and console errors of one page, for assertions and messages."""

    def __init__(self, page, name: str):
        self.name = name
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )

    def __str__(self) -> str:
        return (
            f"[{self.name}] page errors: {self.page_errors}; console errors: {self.console_errors}"
        )


def launch_chromium(pw, chromium_path: str, fake_camera: Path | None = None):
    """Debian's headless Chromium; with ``fake_camera``, its camera plays that .y4m file (and
    no permission prompt is shown)."""
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    if fake_camera is not None:
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={fake_camera}",
        ]
    return pw.chromium.launch(executable_path=chromium_path, headless=True, args=args)
