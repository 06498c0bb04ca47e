"""Test stand-in for Triton's onnxruntime backend, as a Triton Python-backend model (``1/model.py``).

PyTriton's bundled tritonserver carries only the Python backend, so test_triton.py serves the generated
repository with this file beside ``model.onnx``: it runs the same ONNX file with onnxruntime, and the
server does the rest as it would for ``platform: "onnxruntime_onnx"`` (config, batching, parameters, I/O).
"""

import json
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            pixel_values = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            logits = self.session.run([self.output_name], {self.input_name: pixel_values})[0]
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, logits)]))
        return responses
