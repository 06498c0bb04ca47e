"""Self-describing ONNX models: read the ``fer`` metadata and run a classifier with onnxruntime.

torch-free (numpy, OpenCV, onnxruntime): what the runtime and ``fer-eval`` use for ``.onnx`` files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fer_engine.errors import FerError
from fer_engine.spec import ModelSpec

from .preprocess import faces_to_pixel_values

METADATA_KEY = "fer"


def read_spec(session) -> ModelSpec:
    meta = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in meta:
        raise FerError("this ONNX file has no 'fer' metadata: export it with fer-export")
    try:
        return ModelSpec.from_metadata(json.loads(meta[METADATA_KEY]))
    except json.JSONDecodeError as exc:
        raise FerError(f"the ONNX file's 'fer' metadata is not JSON: {exc}") from exc


def available_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


class OnnxClassifier:
    """An exported classifier: ``predict_logits(pixel_values)`` and ``predict_probs(faces)``."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FerError(f"model file not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise FerError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        self.spec = read_spec(self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        self.description = f"{self.spec.model} {self.spec.precision} ONNX {self.path} ({self.providers[0]})"

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(pixel_values, np.float32)})[0]

    def predict_probs(self, faces, *, batch_size: int = 256, tta: bool = False) -> np.ndarray:
        chunks = []
        for start in range(0, len(faces), batch_size):
            x = faces_to_pixel_values(faces[start:start + batch_size], self.spec)
            probs = _softmax(self.predict_logits(x))
            if tta:
                probs = (probs + _softmax(self.predict_logits(np.ascontiguousarray(x[..., ::-1])))) / 2
            chunks.append(probs)
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.spec.labels)), np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
