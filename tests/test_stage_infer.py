"""runtime/stages/infer.py and the classifier backends: batching, model resolution, providers, CUDA buffers."""

from __future__ import annotations

import json
import sys
import threading

import cv2
import numpy as np
import pytest

from conftest import YUNET, needs_fer2013, needs_yunet
from fer_engine.errors import FerError
from fer_engine.runtime import Recognizer
from fer_engine.runtime.backends import load_classifier, resolve_model, shipped_models
from fer_engine.runtime.detectors import DetectorConfig
from fer_engine.runtime.providers import choose_providers


@needs_yunet
@needs_fer2013
def test_a_hundred_faces_in_one_frame_are_classified_in_batches(publictest):
    recognizer = Recognizer()
    frame = np.full((1000, 1000), 128, np.uint8)
    for i in range(100):
        y, x = divmod(i, 10)
        frame[y * 100 + 4:y * 100 + 96, x * 100 + 4:x * 100 + 96] = cv2.resize(publictest.images[i], (92, 92))
    detections = recognizer.detector.__class__(DetectorConfig(scale=1.0), YUNET).detect(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    crops = recognizer.crop(frame, detections)
    probs = recognizer.classify(crops, max_batch=32)
    assert len(detections) >= 80 and probs.shape == (len(detections), 7)
    np.testing.assert_allclose(probs, recognizer.classify(crops, max_batch=len(crops)), atol=1e-5)


def test_models_are_chosen_by_name_and_suffix(tmp_path):
    assert resolve_model(None).name == "cnn-int8.onnx" and "cnn" in shipped_models()
    assert load_classifier("cnn").providers == ["CPUExecutionProvider"]
    with pytest.raises(FerError, match="Did you mean 'cnn-int8'"):
        resolve_model("cnn_int8")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(FerError, match="no backend for 'model.txt'"):
        load_classifier(str(tmp_path / "model.txt"))
    (tmp_path / "fake.onnx").write_bytes(b"not onnx")
    with pytest.raises(FerError, match="onnxruntime cannot load"):
        load_classifier(str(tmp_path / "fake.onnx"))
    engine = tmp_path / "cnn.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(FerError, match="no metadata file beside it"):
        load_classifier(str(engine))
    (tmp_path / "cnn.engine.json").write_text(json.dumps(resolve_spec_json()))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(FerError, match="TensorRT is not installed"):
            load_classifier(str(engine))


def resolve_spec_json() -> dict:
    return load_classifier("cnn").spec.to_metadata()


def test_providers_are_checked_against_this_onnxruntime():
    import onnxruntime as ort

    available = ort.get_available_providers()
    assert choose_providers(None)[-1] == "CPUExecutionProvider"
    assert choose_providers(["cpu"]) == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        with pytest.raises(FerError, match="'cuda' is not available"):
            choose_providers(["cuda"])


def test_both_onnxruntime_builds_installed_is_named_with_its_fix(monkeypatch, caplog):
    from importlib import metadata

    import fer_engine.runtime.providers as providers

    real_version = metadata.version
    monkeypatch.setattr(metadata, "version",
                        lambda dist: "1.31.1" if dist == "onnxruntime-gpu" else real_version(dist))
    monkeypatch.setattr(providers, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(FerError, match="both onnxruntime and onnxruntime-gpu are installed.*pip uninstall"):
        choose_providers(["cuda"])
    with caplog.at_level("WARNING"):
        load_classifier("cnn-int8")
    assert "both onnxruntime and onnxruntime-gpu are installed" in caplog.text
    monkeypatch.setattr(metadata, "version", real_version)
    assert providers.onnxruntime_conflict() is None  # this environment has one build


def test_pycuda_buffers_use_the_primary_context_on_any_thread(monkeypatch):
    """TensorRT runs in the CUDA runtime's primary context on fer-run's inference thread: pycuda copies must
    make that context current around each call (pycuda.autoinit's own context lives on one thread only)."""
    import types

    if __import__("importlib").util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed: DeviceBuffer takes that path")
    events, stack = [], []

    class Context:
        def push(self):
            stack.append(self)

        @staticmethod
        def pop():
            stack.pop()

    primary = Context()

    def op(name):
        def run(*args):
            events.append((name, bool(stack) and stack[-1] is primary))
        return run

    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None
    driver.Context = Context
    driver.Device = lambda index: types.SimpleNamespace(retain_primary_context=lambda: primary)
    driver.mem_alloc = lambda nbytes: (events.append(("alloc", bool(stack))), 4096)[1]
    driver.memcpy_htod, driver.memcpy_dtoh = op("htod"), op("dtoh")
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)

    from fer_engine.runtime.cuda import DeviceBuffer

    buffer = DeviceBuffer(64)
    worker = threading.Thread(target=lambda: (buffer.upload(np.zeros(4, np.float32)),
                                              buffer.download(np.zeros(4, np.float32))))
    worker.start()
    worker.join()
    assert buffer.ptr == 4096 and events == [("alloc", True), ("htod", True), ("dtoh", True)]
    assert stack == []  # every push popped
    assert "pycuda.autoinit" not in sys.modules
