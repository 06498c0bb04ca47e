"""The input contract of docs/architecture.md in numpy/OpenCV: gray face crops → ``pixel_values`` for a model's spec.

torch-free: this is what runs on a Jetson. ``fer_engine.train.preprocess`` is the same contract in torch.
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_engine.spec import ModelSpec


def faces_to_pixel_values(faces: np.ndarray | list, spec: ModelSpec) -> np.ndarray:
    """uint8 gray faces ([N, h, w] array, or a list of 2-D crops of any size) → float32 [N, C, H, W]."""
    height, width = spec.image_size
    out = np.empty((len(faces), 1, height, width), np.float32)
    for i, face in enumerate(faces):
        if face.shape[:2] != (height, width):
            shrinking = face.shape[0] > height
            face = cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        out[i, 0] = face
    mean = np.asarray(spec.mean, np.float32).reshape(1, -1, 1, 1)
    scale = (255.0 * np.asarray(spec.std, np.float32)).reshape(1, -1, 1, 1)
    return (np.repeat(out, spec.channels, axis=1) - 255.0 * mean) / scale


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probs_of(predict_logits, faces, spec: ModelSpec, tta: bool = False) -> np.ndarray:
    """Softmax probabilities of ``faces`` through a backend's ``predict_logits``; ``tta`` averages in the
    mirrored faces."""
    x = faces_to_pixel_values(faces, spec)
    probs = softmax(predict_logits(x))
    if tta:
        probs = (probs + softmax(predict_logits(np.ascontiguousarray(x[..., ::-1])))) / 2
    return probs
