"""Face detectors, one registry: ``yunet`` (YuNet on onnxruntime, the default), ``yunet-opencv`` (the same
model through OpenCV's FaceDetectorYN: same faces, about half the speed) and ``haar``.

YuNet (the 232 KB ``yunet_s_640_640.onnx``, Apache-2.0, with its LICENSE and NOTICE) ships inside the
package, so an offline edge box detects with it and nothing is downloaded. ``resolve_yunet_model`` takes,
in order: an explicit path (``--detector-model``), ``$FER_ENGINE_YUNET``, the packaged file. Haar stays
as an explicit choice (``--detector haar``), and as the fallback of an install that lost the file.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_engine.errors import FerError, FieldError
from fer_engine.spec import did_you_mean

from .results import Detections
from .yunet import YuNetOnnx, YuNetOpenCV

log = logging.getLogger("fer_engine.runtime")

PACKAGED_YUNET = Path(__file__).resolve().parent / "models" / "yunet" / "yunet_s_640_640.onnx"
YUNET_ENV = "FER_ENGINE_YUNET"


@dataclass(frozen=True)
class DetectorConfig:
    name: str = "yunet"
    model: str | None = None  # YuNet ONNX file; None = look it up (see resolve_yunet_model)
    scale: float = 0.5  # detect on the frame resized by this factor; boxes come back in full-frame pixels
    min_face: int = 24  # smallest face side kept, in full-frame pixels
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    threads: int | None = None  # the detector's own threads (onnxruntime's for yunet); None = library default


def resolve_yunet_model(explicit: str | None = None) -> Path | None:
    """The YuNet file to use: ``explicit``, else ``$FER_ENGINE_YUNET``, else the packaged one (None if an
    install lost it)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FerError(f"detector model not found: {path} (pass a YuNet .onnx file to --detector-model)")
        return path
    if os.environ.get(YUNET_ENV):
        path = Path(os.environ[YUNET_ENV]).expanduser()
        if not path.is_file():
            raise FerError(f"${YUNET_ENV} points to {path}, which does not exist")
        return path
    return PACKAGED_YUNET if PACKAGED_YUNET.is_file() else None


def downscale(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` for a detector: halved with INTER_AREA while the factor left is 2 or more
    (OpenCV's fast path; the default 0.5 is exactly one such step), then INTER_LINEAR for the rest. INTER_AREA
    at other factors costs 4-9 ms on a 1280x720 frame (0.4, 0.6, 0.75), more than YuNet itself, for the same
    faces (benchmarks/RESULTS.md)."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        height, width = image.shape[:2]
        even = image[:height - height % 2, :width - width % 2]  # an odd last row or column is dropped
        image = cv2.resize(even, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    if (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


class YuNetDetector:
    """YuNet on a downscaled frame; gives boxes, scores and the five landmarks. ``engine`` runs the network:
    onnxruntime (``YuNetOnnx``, the default) or OpenCV's FaceDetectorYN."""

    def __init__(self, config: DetectorConfig, model: Path, engine: str = "onnxruntime"):
        self.config = config
        self.model = model
        self.engine = engine
        if engine == "onnxruntime":
            self.name = "yunet"
            self._net = YuNetOnnx(model, config.score_threshold, config.nms_threshold, threads=config.threads)
        else:
            self.name = "yunet-opencv"
            self._net = YuNetOpenCV(model, config.score_threshold, config.nms_threshold)

    def clone(self) -> "YuNetDetector":
        """Another detector like this one, for a parallel worker (a detector is not shared between threads)."""
        return YuNetDetector(self.config, self.model, self.engine)

    def detect(self, frame: np.ndarray) -> Detections:
        scale = self.config.scale
        image = downscale(frame, scale)
        faces = self._net.detect(image)
        if len(faces) == 0:
            return Detections.empty()
        # Each row: x, y, w, h, five landmarks (x, y), score — in pixels of the downscaled image.
        detections = Detections(faces[:, :4] / scale, faces[:, 14], faces[:, 4:14].reshape(-1, 5, 2) / scale)
        return _keep_large(detections, self.config.min_face)


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade: no landmarks, score 1."""

    name = "haar"

    def __init__(self, config: DetectorConfig, scale_factor: float = 1.1, min_neighbors: int = 5):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FerError(f"OpenCV's Haar cascade is missing ({path}): reinstall opencv-python-headless<5")
        self.config = config
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def clone(self) -> "HaarDetector":
        return HaarDetector(self.config, self.scale_factor, self.min_neighbors)

    def detect(self, frame: np.ndarray) -> Detections:
        scale = self.config.scale
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        gray = downscale(gray, scale)
        min_side = max(1, int(self.config.min_face * scale))
        boxes = self._cascade.detectMultiScale(gray, self.scale_factor, self.min_neighbors, minSize=(min_side, min_side))
        if len(boxes) == 0:
            return Detections.empty()
        boxes = np.asarray(boxes, np.float32) / scale
        return Detections(boxes, np.ones(len(boxes), np.float32))


def _keep_large(detections: Detections, min_face: int) -> Detections:
    if not len(detections) or min_face <= 0:
        return detections
    return detections.select(np.minimum(detections.boxes[:, 2], detections.boxes[:, 3]) >= min_face)


def _onnx_installed() -> bool:
    try:
        return importlib.util.find_spec("onnx") is not None
    except (ImportError, ValueError):
        return False


def _yunet(engine: str):
    def create(config: DetectorConfig):
        model = resolve_yunet_model(config.model)
        if model is None:
            log.warning("the packaged YuNet face detector is missing from this install (%s; reinstall fer-engine, "
                        "pass --detector-model or set $%s): falling back to OpenCV's Haar cascade", PACKAGED_YUNET, YUNET_ENV)
            return HaarDetector(config)
        if engine == "onnxruntime" and not _onnx_installed():
            # onnx is in the base install, but an install with --no-deps (a Jetson image) can lack it.
            log.warning("the onnx package is not installed (pip install onnx): YuNet runs on OpenCV's "
                        "FaceDetectorYN instead, about half as fast")
            return YuNetDetector(config, model, "opencv")
        return YuNetDetector(config, model, engine)
    return create


DETECTORS = {"yunet": _yunet("onnxruntime"), "yunet-opencv": _yunet("opencv"), "haar": HaarDetector}


def create_detector(config: DetectorConfig):
    if config.name not in DETECTORS:
        raise FerError(f"unknown detector '{config.name}' (choose from {', '.join(DETECTORS)})."
                       + did_you_mean(config.name, DETECTORS))
    if not 0.05 <= config.scale <= 4:
        raise FieldError("scale", f"must be between 0.05 and 4, got {config.scale}")
    return DETECTORS[config.name](config)
