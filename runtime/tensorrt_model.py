"""A TensorRT engine (``.engine`` / ``.plan`` from fer-export) as a classifier.

Uses the name-based tensor API of TensorRT 8.5+ and 10.x (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``). The ``fer`` metadata comes from the JSON beside the engine (``model.engine.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fer_engine.errors import FerError
from fer_engine.modelfile import read_engine_sidecar

from .classifier import BatchedClassifier
from .cuda import DeviceBuffer, import_tensorrt


class TensorRTClassifier(BatchedClassifier):
    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FerError(f"model file not found: {self.path}")
        self.spec, self.build = read_engine_sidecar(self.path)
        trt = import_tensorrt()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        key = self.build.get("key", self.build)  # engines built before the build key recorded these at the top
        if self.engine is None:
            raise FerError(f"TensorRT cannot load {self.path}: engines only run on the GPU model and TensorRT "
                           f"version that built them (built with {key.get('tensorrt', '?')} for "
                           f"sm{key.get('sm', '?')}); rebuild it here with fer-export --tensorrt")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = "pixel_values", "logits"
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        height, width = self.spec.image_size
        self._input = DeviceBuffer(self.max_batch * self.spec.channels * height * width * 4)
        self._output = DeviceBuffer(self.max_batch * len(self.spec.labels) * 4)
        self.context.set_tensor_address(self.input_name, self._input.ptr)
        self.context.set_tensor_address(self.output_name, self._output.ptr)
        self.providers = ["TensorRT"]
        self.description = f"{self.spec.model} {self.spec.precision} TensorRT {trt.__version__} engine {self.path}"

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(pixel_values), self.max_batch):
            batch = np.ascontiguousarray(pixel_values[start:start + self.max_batch], np.float32)
            self._input.upload(batch)
            self.context.set_input_shape(self.input_name, batch.shape)
            if not self.context.execute_async_v3(0):
                raise FerError(f"TensorRT failed to run {self.path}")
            out = np.empty((len(batch), len(self.spec.labels)), np.float32)
            outputs.append(self._output.download(out))  # a blocking copy on the default stream: waits for the run
        return np.concatenate(outputs)
