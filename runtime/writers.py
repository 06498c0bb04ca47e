"""Result files: JSON Lines (one object per frame), CSV (one row per face), an annotated video.

Files are opened before the pipeline starts, so an unwritable path fails at once, and each record goes to
the file as it is written (nothing held back in a buffer), so whatever stops the run (Ctrl-C, SIGTERM, a
failing stage) leaves valid files up to the last frame. A write that fails (a full disk) raises a
``FerError`` naming the output, with the file cut back to its last whole record. With several sources,
each gets its own file (``out-0.mp4``, ``out-1.mp4``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from fer_engine.errors import FerError
from fer_engine.spec import LABELS

from .results import FrameResult

log = logging.getLogger("fer_engine.runtime")


def per_source_path(path: str | Path, source: int, n_sources: int) -> Path:
    path = Path(path).expanduser()
    return path if n_sources == 1 else path.with_name(f"{path.stem}-{source}{path.suffix}")


def open_for_writing(path: Path, label: str | None = None):
    """The file, created or emptied, as an unbuffered binary handle."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb", buffering=0)
    except OSError as exc:
        raise FerError(f"cannot write {label or path}: {exc.strerror or exc} (choose a writable output path)") from exc


class RecordFile:
    """A text file written a whole record at a time; a record that fails halfway is cut off again."""

    def __init__(self, path: Path, label: str | None = None):
        self.path, self.label = path, label or str(path)
        self.handle = open_for_writing(path, self.label)
        self.size = 0  # bytes of whole records
        self.failed = False

    def append(self, text: str) -> None:
        encoded = text.encode("utf-8")
        data = memoryview(encoded)
        try:
            while data:
                data = data[self.handle.write(data):]
        except OSError as exc:
            self.failed = True
            self._cut_back()
            raise FerError(f"cannot write {self.label}: {exc.strerror or exc}") from exc
        self.size += len(encoded)

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self.handle.fileno(), self.size)
        except OSError:
            pass  # not a regular file (/dev/full), or the file system refuses even that

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError as exc:
            if not self.failed:  # a failed file has already said so
                raise FerError(f"cannot finish {self.label}: {exc.strerror or exc}") from exc


class JsonlWriter:
    def __init__(self, path: Path, label: str | None = None):
        self.path = path
        self.file = RecordFile(path, label)
        self.label = self.file.label

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self.file.append(json.dumps(result.to_dict()) + "\n")

    def close(self) -> None:
        self.file.close()


class CsvWriter:
    def __init__(self, path: Path, labels: tuple[str, ...] = LABELS, label: str | None = None):
        self.path, self.labels = path, labels
        self.file = RecordFile(path, label)
        self.label = self.file.label
        try:
            self._append([["frame", "time", "source", "file", "track", "x", "y", "w", "h", "score", "label",
                           *[f"p_{name}" for name in labels]]])
        except FerError:
            self.file.close()
            raise

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        if result.faces:
            self._append([[result.frame, f"{result.time:.4f}", result.source, result.name or "", face.track,
                           *face.box, f"{face.score:.4f}", face.label,
                           *[f"{face.probs.get(name, 0.0):.4f}" for name in self.labels]] for face in result.faces])

    def _append(self, rows: list[list]) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        self.file.append(text.getvalue())

    def close(self) -> None:
        self.file.close()


class VideoWriter:
    """mp4v in an .mp4 (or whatever the suffix says to OpenCV); opened at the first frame, when its size is known."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}

    def __init__(self, path: Path, fps: float | None, label: str | None = None):
        self.label = label or str(path)
        if path.suffix.lower() not in self.FOURCC:
            raise FerError(f"--output {path}: use a video file name ending in {', '.join(self.FOURCC)}")
        open_for_writing(path, self.label).close()  # fail now, not at the first frame, when the path is not writable
        self.path, self.fps = path, fps or 30.0
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        if image is None:
            return
        size = (image.shape[1], image.shape[0])
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*self.FOURCC[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
            if not self.writer.isOpened():
                raise FerError(f"OpenCV cannot write the video {self.label}")
            self.size = size
        if size != self.size:  # a source that changes resolution mid-stream: keep the file's size
            image = cv2.resize(image, self.size)
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the index (the mp4 moov atom): without it no player opens the file
        elif self.path.is_file() and self.path.stat().st_size == 0:
            # An empty .mp4 is no video any player opens: leave none rather than a broken one.
            self.path.unlink()
            log.info("no frame was written: %s not created", self.path)
