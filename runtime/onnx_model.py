"""Self-describing ONNX models: read the ``fer`` metadata and run a classifier with onnxruntime.

torch-free (numpy, OpenCV, onnxruntime): what the runtime and ``fer-eval`` use for ``.onnx`` files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from fer_engine.errors import FerError
from fer_engine.modelfile import onnx_session_spec

from .classifier import BatchedClassifier
from .providers import choose_providers, onnxruntime_conflict, preload_nvidia_wheels, short_name, start_failures

log = logging.getLogger("fer_engine.runtime")


class OnnxClassifier(BatchedClassifier):
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
        requested = choose_providers(providers)
        if requested[0] != "CPUExecutionProvider":
            preload_nvidia_wheels()
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=requested)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            raise FerError(f"onnxruntime cannot load {self.path} (is it an ONNX model from fer-export?): "
                           f"{str(exc).strip().splitlines()[0]}") from exc
        self.spec = onnx_session_spec(self.session, str(self.path))
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()
        missing = [p for p in requested if p not in self.providers]
        if missing:
            # onnxruntime-gpu silently drops CUDA/TensorRT when their libraries are missing.
            reasons = start_failures(missing)
            if providers and self.providers[0] not in requested:
                asked = ",".join(short_name(p) for p in requested)
                raise FerError(f"onnxruntime could not start {', '.join(missing)} ({reasons}). To run on the CPU "
                               f"instead, allow it: fer-run --providers {asked},cpu, fer-eval --device auto")
            # Without TensorRT's libraries CUDA still runs: worth a note, not a warning on every start of a GPU server.
            on_gpu = self.providers[0] != "CPUExecutionProvider"
            (log.info if on_gpu else log.warning)("onnxruntime could not start %s (%s): running on %s",
                                                  ", ".join(missing), reasons, self.providers[0])
        elif not providers and (conflict := onnxruntime_conflict()):
            log.warning(conflict)
        self.description = f"{self.spec.model} {self.spec.precision} ONNX {self.path} ({self.providers[0]})"

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(pixel_values, np.float32)})[0]


