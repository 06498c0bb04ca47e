"""Result files: JSON Lines (one object per frame), CSV (one row per face), an annotated video.

Files are opened before the pipeline starts, so an unwritable path fails at once, and each record is
flushed as written, so whatever stops the run (Ctrl-C, a failing stage) leaves valid files up to the
last frame. With several sources, each gets its own file (``out-0.mp4``, ``out-1.mp4``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from fer_engine.errors import FerError
from fer_engine.spec import LABELS

from .results import FrameResult


def per_source_path(path: str | Path, source: int, n_sources: int) -> Path:
    path = Path(path).expanduser()
    return path if n_sources == 1 else path.with_name(f"{path.stem}-{source}{path.suffix}")


def open_for_writing(path: Path, newline: str | None = None):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", newline=newline, encoding="utf-8")
    except OSError as exc:
        raise FerError(f"cannot write {path}: {exc.strerror or exc} (choose a writable output path)") from exc


class JsonlWriter:
    def __init__(self, path: Path):
        self.path = path
        self.handle = open_for_writing(path)

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self.handle.write(json.dumps(result.to_dict()) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class CsvWriter:
    def __init__(self, path: Path, labels: tuple[str, ...] = LABELS):
        self.path, self.labels = path, labels
        self.handle = open_for_writing(path, newline="")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(["frame", "time", "source", "file", "track", "x", "y", "w", "h", "score", "label",
                              *[f"p_{label}" for label in labels]])
        self.handle.flush()

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        for face in result.faces:
            self.writer.writerow([result.frame, f"{result.time:.4f}", result.source, result.name or "", face.track,
                                  *face.box, f"{face.score:.4f}", face.label,
                                  *[f"{face.probs.get(label, 0.0):.4f}" for label in self.labels]])
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class VideoWriter:
    """mp4v in an .mp4 (or whatever the suffix says to OpenCV); opened at the first frame, when its size is known."""

    FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}

    def __init__(self, path: Path, fps: float | None):
        if path.suffix.lower() not in self.FOURCC:
            raise FerError(f"--output {path}: use a video file name ending in {', '.join(self.FOURCC)}")
        open_for_writing(path).close()  # fail now, not at the first frame, when the path is not writable
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
                raise FerError(f"OpenCV cannot write the video {self.path}")
            self.size = size
        if size != self.size:  # a source that changes resolution mid-stream: keep the file's size
            image = cv2.resize(image, self.size)
        self.writer.write(image)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
