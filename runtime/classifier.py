"""The one interface every classifier backend gives: its spec, ``predict_logits`` on prepared inputs, and
``predict_probs`` on gray faces, written once here for all of them (ONNX Runtime, TensorRT, Triton, and
PyTorch checkpoints in ``fer_engine.train.classifiers``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from fer_engine.spec import ModelSpec

from .preprocess import probs_of


class Classifier(Protocol):
    spec: ModelSpec
    description: str

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray: ...

    def predict_probs(self, faces, *, batch_size: int = 256, tta: bool = False) -> np.ndarray: ...


class BatchedClassifier:
    """``predict_probs`` for a backend that implements ``predict_logits`` (a backend with a batch limit of
    its own, such as a TensorRT profile or a Triton config, splits further inside ``predict_logits``)."""

    spec: ModelSpec

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_probs(self, faces, *, batch_size: int = 256, tta: bool = False) -> np.ndarray:
        """Softmax probabilities of uint8 gray faces, ``batch_size`` faces per call; ``tta`` averages in the
        mirrored faces. Columns follow ``spec.labels``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
        chunks = [probs_of(self.predict_logits, faces[start:start + batch_size], self.spec, tta)
                  for start in range(0, len(faces), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.spec.labels)), np.float32)
