"""Detect, crop and classify faces in one image. It owns the model and the detector; the pipeline's stages
use its parts (``classify``, ``crop``, ``detector_pool``), each on its own thread.

    from fer_engine.runtime import Recognizer
    faces = Recognizer().predict(cv2.imread("photo.jpg"))   # -> list[Face]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .backends import load_classifier
from .crops import crop_faces
from .detectors import DetectorConfig, create_detector
from .preprocess import faces_to_pixel_values, softmax
from .results import Detections, Face, faces_from_probs
from .sources import as_bgr

log = logging.getLogger("fer_engine.runtime")


@dataclass(frozen=True)
class RecognizerConfig:
    model: str | None = None  # a path or a shipped model name; None = the shipped int8 CNN
    providers: tuple[str, ...] | None = None  # onnxruntime providers; None = TensorRT > CUDA > CPU as available
    threads: int | None = None  # classifier threads; None = the backend's default
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    align: bool = False  # rotate crops so the eyes are level (YuNet landmarks); see benchmarks/RESULTS.md


class Recognizer:
    def __init__(self, config: RecognizerConfig | None = None, **overrides):
        config = config or RecognizerConfig()
        if overrides:
            config = RecognizerConfig(**{**config.__dict__, **overrides})
        self.config = config
        self.classifier = load_classifier(config.model, list(config.providers) if config.providers else None,
                                          config.threads)
        self.detector = create_detector(config.detector)
        self.spec = self.classifier.spec

    def describe(self) -> str:
        detector = self.detector.name + (f" ({self.detector.model.name})" if hasattr(self.detector, "model") else "")
        return (f"model {self.classifier.description}; detector {detector} at scale {self.config.detector.scale}"
                + ("; aligned crops" if self.config.align else ""))

    def detector_pool(self, size: int) -> list:
        """``size`` detectors for parallel workers: this one and clones (a detector is not shared between threads)."""
        return [self.detector] + [self.detector.clone() for _ in range(size - 1)]

    def detect(self, image: np.ndarray) -> Detections:
        return self.detector.detect(image)

    def crop(self, image: np.ndarray, detections: Detections) -> np.ndarray:
        return crop_faces(image, detections, self.spec.image_size, self.spec.crop_margin, self.config.align)

    def classify(self, crops: np.ndarray, max_batch: int = 64) -> np.ndarray:
        """Probabilities ``[N, labels]`` for uint8 gray crops ``[N, H, W]``, in batches of at most ``max_batch``."""
        out = np.empty((len(crops), len(self.spec.labels)), np.float32)
        for start in range(0, len(crops), max_batch):
            chunk = crops[start:start + max_batch]
            out[start:start + len(chunk)] = softmax(self.classifier.predict_logits(faces_to_pixel_values(chunk, self.spec)))
        return out

    def predict(self, image: np.ndarray) -> list[Face]:
        image = as_bgr(np.asarray(image))
        detections = self.detect(image)
        probs = self.classify(self.crop(image, detections))
        return faces_from_probs(detections, probs, self.spec.labels)
