"""Frame sources: camera, video file, network stream (RTSP/HTTP), GStreamer pipeline, image folder or glob.

A source is opened in the calling thread (so a bad path fails before any thread starts) and read in the
pipeline's capture thread. Live sources (camera, stream, GStreamer) are paced by the device; files are
read as fast as the pipeline takes them. Every frame comes out as 3-channel 8-bit BGR, whatever the
source gives (gray, BGRA, 16-bit). Each source counts what it read for the run's summary
(``SourceSummary``): frames, skipped ones, a file that ended before its declared frame count, a
stream's reconnects and the time it spent without frames.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_engine.errors import FerError, FieldError

from .stats import SourceSummary

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
    # Frames unrelated to each other (photos of a folder): no tracks, no smoothing, no boxes reused across them.
    independent = False
    corrupt = 0  # unreadable frames or images skipped

    def read(self) -> tuple[np.ndarray, float, str | None] | None:
        """(image, time in seconds, file name or None), or None at the end of the stream."""
        raise NotImplementedError

    def expected_frames(self) -> int | None:
        """How many frames the source will give, when known (files, image folders); None for live sources."""
        return None

    def interrupt(self) -> None:
        """Called from another thread when the run stops: a read that waits (to reconnect) returns None soon."""

    def summary(self) -> SourceSummary:
        return SourceSummary(self.name, corrupt=self.corrupt)

    def close(self) -> None:
        pass


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture opens."""

    MAX_SKIPPED = 25  # failed reads in a row a file may skip as corrupt frames before it counts as ended

    def __init__(self, target, description: str, api: int = cv2.CAP_ANY, live: bool = False):
        self.target, self.api, self.live, self.name = target, api, live, description
        self.capture = self._open()
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self.frame_count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not live else 0
        self.index = 0
        self.corrupt = 0
        self.ended_early = False
        self._start = time.perf_counter()

    def expected_frames(self) -> int | None:
        return self.frame_count if not self.live and self.frame_count > 0 else None

    def _open(self) -> cv2.VideoCapture:
        capture = self._capture()
        if not capture.isOpened():
            raise FerError(self.open_error())
        return capture

    def _capture(self) -> cv2.VideoCapture:
        with quiet_opencv():
            return cv2.VideoCapture(self.target, self.api)

    def open_error(self) -> str:
        return f"cannot open {self.name}"

    def read(self):
        failures = 0
        while True:
            ok, image = self.capture.read()
            if ok and image is not None and image.size:
                break
            # A file that fails before its last frame has a corrupt frame: skip it, a few times at most.
            if self.live or self.index + self.corrupt + failures >= self.frame_count - 1 or failures >= self.MAX_SKIPPED:
                self._check_complete()
                return None
            failures += 1
        # Failed reads count as corrupt frames only once a frame follows them: at the end they are the end.
        self.corrupt += failures
        if self.live:
            stamp = time.perf_counter() - self._start
        else:
            msec = self.capture.get(cv2.CAP_PROP_POS_MSEC)
            stamp = msec / 1000.0 if msec > 0 or self.index == 0 else self.index / (self.fps or 30.0)
        self.index += 1
        return as_bgr(image), stamp, None

    def _check_complete(self) -> None:
        # One frame of slack: some containers declare a count estimated from duration × frame rate.
        if self.live or self.ended_early or self.index + self.corrupt >= self.frame_count - 1:
            return
        self.ended_early = True
        log.warning("%s ended after %d of its %d declared frames (a truncated or damaged file?); the results "
                    "cover the frames read", self.name, self.index + self.corrupt, self.frame_count)

    def summary(self) -> SourceSummary:
        summary = super().summary()
        if not self.live:
            summary.declared_frames, summary.ended_early = self.frame_count, self.ended_early
        return summary

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
        if file.is_dir():
            raise FerError(f"--video {file} is a folder: --video takes a video file (for a folder of images, "
                           "use --images DIR)")
        if not file.exists():
            raise FerError(f"video file not found: {file}")
        if not (file.is_file() or file.is_fifo()):  # a named pipe is how other programs hand a video over
            raise FerError(f"--video {file} is not a video file but a device or socket: give a video file "
                           "(for a camera use --camera N, for a network source --stream URL)")
        super().__init__(str(file), f"video {file}")

    def open_error(self) -> str:
        return f"cannot read video {self.target}: not a video OpenCV can decode (is the file complete?)"


class StreamSource(CaptureSource):
    """RTSP/HTTP stream: reconnects with exponential back-off when the stream drops, and gives up (the source
    ends) after ``reconnect_timeout`` seconds without a frame; 0 retries for ever."""

    def __init__(self, url: str, reconnect_timeout: float = 60.0, max_backoff: float = 10.0,
                 first_backoff: float = 0.5):
        if reconnect_timeout < 0:
            raise FieldError("reconnect_timeout", f"cannot be negative, got {reconnect_timeout}")
        self.reconnect_timeout, self.max_backoff, self.first_backoff = reconnect_timeout, max_backoff, first_backoff
        self.reconnects = 0
        self.seconds_without_frames = 0.0
        self.gave_up = False
        self._interrupted = threading.Event()
        self._outage_started: float | None = None
        super().__init__(url, f"stream {url}", live=True)

    def _capture(self) -> cv2.VideoCapture:
        if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            return super()._capture()
        # FFmpeg waits 30 s by default on a stream that stalls without closing; a stall should not outlast
        # the reconnect timeout by much. FFmpeg is named: a backend that does not know these settings
        # would refuse to open the stream at all.
        wait_ms = int(1000 * min(30.0, max(1.0, self.reconnect_timeout or 30.0)))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, wait_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, wait_ms]
        with quiet_opencv():
            return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)

    def interrupt(self) -> None:
        self._interrupted.set()

    def read(self):
        frame = super().read()
        if frame is not None:
            return frame
        lost_at = time.perf_counter()
        self._outage_started = lost_at
        log.warning("%s dropped; reconnecting%s", self.name,
                    f" (giving up after {self.reconnect_timeout:g} s without frames)" if self.reconnect_timeout else "")
        backoff = self.first_backoff
        while frame is None:
            waited = time.perf_counter() - lost_at
            if self.reconnect_timeout and waited >= self.reconnect_timeout:
                self._end_outage()
                self.gave_up = True
                log.warning("%s: no frame for %.0f s, giving up on it (--reconnect-timeout)", self.name, waited)
                return None
            pause = backoff if not self.reconnect_timeout else min(backoff, self.reconnect_timeout - waited)
            if self._interrupted.wait(pause):
                self._end_outage()
                return None
            backoff = min(backoff * 2, self.max_backoff)
            self.capture.release()
            self.capture = self._capture()
            if self.capture.isOpened():
                frame = super().read()
        self._end_outage()
        self.reconnects += 1
        log.info("%s: reconnected after %.1f s without frames", self.name, time.perf_counter() - lost_at)
        return frame

    def _end_outage(self) -> None:
        if self._outage_started is not None:
            self.seconds_without_frames += time.perf_counter() - self._outage_started
            self._outage_started = None

    def summary(self) -> SourceSummary:
        summary = super().summary()
        outage = self.seconds_without_frames
        if self._outage_started is not None:  # the run stopped while the stream was down
            outage += time.perf_counter() - self._outage_started
        summary.reconnects, summary.seconds_without_frames, summary.gave_up = self.reconnects, outage, self.gave_up
        summary.frames_lost = round(outage * self.fps) if self.fps else None
        return summary


class GStreamerSource(CaptureSource):
    def __init__(self, pipeline: str):
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise FerError("this OpenCV was built without GStreamer (the PyPI wheels are): on a Jetson use "
                           "JetPack's OpenCV (python3-opencv), or pass an RTSP/HTTP URL with --url")
        super().__init__(pipeline, f"GStreamer pipeline '{pipeline}'", api=cv2.CAP_GSTREAMER, live=True)


def image_files(pattern: str) -> list[Path]:
    """The images of a folder (sorted by name), a single image, or a glob's matches."""
    path = Path(pattern).expanduser()
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in IMAGE_SUFFIXES)


class ImageSource(FrameSource):
    """A folder of images (sorted by name) or a glob pattern; unreadable files are skipped with a warning.

    The images are independent photos unless ``sequence``: then they are frames of one scene, and faces are
    tracked and smoothed across them as in a video."""

    def __init__(self, pattern: str, sequence: bool = False):
        files = image_files(pattern)
        if not files:
            raise FerError(f"no images found at {pattern} (a folder or a glob like 'photos/*.jpg'; "
                           f"suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.files, self.name, self.index, self.corrupt = files, f"images {pattern}", 0, 0
        self.independent = not sequence

    def expected_frames(self) -> int | None:
        return len(self.files)

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
    reconnect_timeout: float = 60.0  # url: seconds without a frame before the stream is given up; 0 = never
    image_sequence: bool = False  # images: frames of one scene (tracked), not independent photos

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
            return StreamSource(self.target, self.reconnect_timeout)
        if self.kind == "gst":
            return GStreamerSource(self.target)
        if self.kind == "images":
            return ImageSource(self.target, self.image_sequence)
        raise FerError(f"unknown source kind '{self.kind}'")
