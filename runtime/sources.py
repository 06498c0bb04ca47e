"""Frame sources: camera, video file, network stream (RTSP/HTTP), GStreamer pipeline, image folder or glob.

A source is opened in the calling thread (so a bad path fails before any thread starts) and read in the
pipeline's capture thread. Live sources (camera, stream, GStreamer) are paced by the device; files are
read as fast as the pipeline takes them. Every frame comes out as 3-channel 8-bit BGR, whatever the
source gives (gray, BGRA, 16-bit).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_engine.errors import FerError

log = logging.getLogger("fer_engine.runtime")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


@dataclass
class Frame:
    source: int
    index: int
    time: float  # seconds of the source (video timestamp; wall clock since start for live sources)
    image: np.ndarray
    captured: float  # time.perf_counter() when it was read: the start of its latency
    name: str | None = None  # file name, for image sources


@contextlib.contextmanager
def quiet_opencv():
    """OpenCV prints several warnings when a camera or file cannot be opened; we print one clear error."""
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def as_bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        scale = 255.0 / 65535.0 if image.dtype == np.uint16 else 255.0 / max(float(image.max()), 1.0)
        image = cv2.convertScaleAbs(image, alpha=scale)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class FrameSource:
    live = False
    fps: float | None = None
    name = "source"

    def read(self) -> tuple[np.ndarray, float, str | None] | None:
        """(image, time in seconds, file name or None), or None at the end of the stream."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture opens."""

    def __init__(self, target, description: str, api: int = cv2.CAP_ANY, live: bool = False):
        self.target, self.api, self.live, self.name = target, api, live, description
        self.capture = self._open()
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        self.index = 0
        self.corrupt = 0
        self._start = time.perf_counter()

    def _open(self) -> cv2.VideoCapture:
        with quiet_opencv():
            capture = cv2.VideoCapture(self.target, self.api)
        if not capture.isOpened():
            raise FerError(self.open_error())
        return capture

    def open_error(self) -> str:
        return f"cannot open {self.name}"

    def read(self):
        failures = 0
        while True:
            ok, image = self.capture.read()
            if ok and image is not None and image.size:
                break
            # A file that fails before its last frame has a corrupt frame: skip it, a few times at most.
            if self.live or self.index + failures >= self.frame_count - 1 or failures >= 25:
                return None
            failures += 1
            self.corrupt += 1
        if self.live:
            stamp = time.perf_counter() - self._start
        else:
            msec = self.capture.get(cv2.CAP_PROP_POS_MSEC)
            stamp = msec / 1000.0 if msec > 0 or self.index == 0 else self.index / (self.fps or 30.0)
        self.index += 1
        return as_bgr(image), stamp, None

    def close(self) -> None:
        self.capture.release()


class CameraSource(CaptureSource):
    def __init__(self, index: int, width: int | None = None, height: int | None = None, fps: float | None = None):
        self.requested = (width, height, fps)
        super().__init__(index, f"camera {index}", live=True)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height), (cv2.CAP_PROP_FPS, fps)):
            if value:
                self.capture.set(prop, value)

    def open_error(self) -> str:
        return (f"cannot open camera {self.target}: no such camera, or it is busy "
                "(list cameras with `v4l2-ctl --list-devices` on Linux; try another --camera index)")


class VideoFileSource(CaptureSource):
    def __init__(self, path: str):
        file = Path(path).expanduser()
        if not file.is_file():
            raise FerError(f"video file not found: {file}")
        super().__init__(str(file), f"video {file}")

    def open_error(self) -> str:
        return f"cannot read video {self.target}: not a video OpenCV can decode (is the file complete?)"


class StreamSource(CaptureSource):
    """RTSP/HTTP stream: reconnects with exponential back-off when the stream drops."""

    def __init__(self, url: str, max_backoff: float = 10.0, give_up_after: float = 300.0):
        self.max_backoff, self.give_up_after = max_backoff, give_up_after
        self.reconnects = 0
        super().__init__(url, f"stream {url}", live=True)

    def read(self):
        frame = super().read()
        backoff, lost_at = 0.5, time.perf_counter()
        while frame is None:
            if time.perf_counter() - lost_at > self.give_up_after:
                log.warning("%s: no frames for %.0f s, giving up", self.name, self.give_up_after)
                return None
            log.warning("%s dropped; reconnecting in %.1f s", self.name, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            self.capture.release()
            with quiet_opencv():
                self.capture = cv2.VideoCapture(self.target, self.api)
            if self.capture.isOpened():
                self.reconnects += 1
                frame = super().read()
        return frame


class GStreamerSource(CaptureSource):
    def __init__(self, pipeline: str):
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise FerError("this OpenCV was built without GStreamer (the PyPI wheels are): on a Jetson use "
                           "JetPack's OpenCV (python3-opencv), or pass an RTSP/HTTP URL with --url")
        super().__init__(pipeline, f"GStreamer pipeline '{pipeline}'", api=cv2.CAP_GSTREAMER, live=True)


class ImageSource(FrameSource):
    """A folder of images (sorted by name) or a glob pattern; unreadable files are skipped with a warning."""

    def __init__(self, pattern: str):
        path = Path(pattern).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files = [path]
        else:
            files = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FerError(f"no images found at {pattern} (a folder or a glob like 'photos/*.jpg'; "
                           f"suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.files, self.name, self.index, self.corrupt = files, f"images {pattern}", 0, 0

    def read(self):
        while self.index < len(self.files):
            file = self.files[self.index]
            self.index += 1
            image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
            if image is None:
                self.corrupt += 1
                log.warning("skipping %s: not an image OpenCV can read", file)
                continue
            return as_bgr(image), 0.0, file.name
        return None


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # camera | video | url | gst | images
    target: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    def open(self) -> FrameSource:
        if self.kind == "camera":
            try:
                index = int(self.target)
            except ValueError:
                raise FerError(f"--camera takes a camera index like 0, got '{self.target}'") from None
            return CameraSource(index, self.width, self.height, self.fps)
        if self.kind == "video":
            return VideoFileSource(self.target)
        if self.kind == "url":
            return StreamSource(self.target)
        if self.kind == "gst":
            return GStreamerSource(self.target)
        if self.kind == "images":
            return ImageSource(self.target)
        raise FerError(f"unknown source kind '{self.kind}'")
