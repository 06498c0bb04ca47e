"""YuNet, run by onnxruntime (``YuNetOnnx``) or by OpenCV's ``FaceDetectorYN`` (``YuNetOpenCV``).

Both take the same model and give the same faces; onnxruntime about twice as fast (benchmarks/RESULTS.md).

The published YuNet files declare a fixed 640x640 input, which onnxruntime enforces. The network itself is fully
convolutional (its reshapes use -1, its upsampling a scale factor), so ``dynamic_yunet`` only relaxes the
declared sizes; the image is zero-padded on the right and bottom to a multiple of 32, as OpenCV does. Rows
of ``detect`` are OpenCV's: x, y, w, h, five landmarks (x, y), score, in pixels of the given image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fer_engine.errors import FerError

STRIDES = (8, 16, 32)
DIVISOR = 32
OUTPUTS = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES]


@lru_cache(maxsize=4)
def dynamic_yunet(path: Path) -> bytes:
    """The YuNet graph with free input height/width and free anchor counts, serialized for onnxruntime (read
    once per file: every detection worker's session starts from the same bytes)."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
        raise FerError(f"{path} is not an ONNX file (pass YuNet's yunet_s_640_640.onnx to --detector-model)") from exc
    names = {value.name for value in model.graph.output}
    if len(model.graph.input) != 1 or not set(OUTPUTS) <= names:
        raise FerError(f"{path} is not a YuNet model: it lacks the outputs {', '.join(sorted(set(OUTPUTS) - names))}")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for value in model.graph.output:
        value.type.tensor_type.shape.dim[1].dim_param = f"{value.name}_anchors"
    del model.graph.value_info[:]  # stale 640x640 intermediate shapes; onnxruntime infers them again
    return model.SerializeToString()


@lru_cache(maxsize=16)
def anchor_grids(pad_h: int, pad_w: int) -> list[np.ndarray]:
    """Per stride, the (column, row) of every anchor, in the order of the outputs."""
    grids = []
    for stride in STRIDES:
        rows, cols = np.mgrid[0:pad_h // stride, 0:pad_w // stride]
        grids.append(np.stack([cols.ravel(), rows.ravel()], 1).astype(np.float32))
    return grids


class YuNetOnnx:
    def __init__(self, path: Path, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000,
                 threads: int | None = None, providers: list[str] | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        graph = dynamic_yunet(path)
        try:
            self.session = ort.InferenceSession(graph, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:
            raise FerError(f"onnxruntime cannot load the YuNet model {path}: {str(exc).strip().splitlines()[0]}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._blob: np.ndarray | None = None
        self._blob_size: tuple[int, int] | None = None

    def _input(self, image: np.ndarray) -> np.ndarray:
        """The image as a float NCHW blob, zero-padded; the buffer is kept while the image size stays."""
        h, w = image.shape[:2]
        if (h, w) != self._blob_size:
            self._blob = np.zeros((1, 3, -(-h // DIVISOR) * DIVISOR, -(-w // DIVISOR) * DIVISOR), np.float32)
            self._blob_size = (h, w)
        # Raw BGR 0..255, as cv2.dnn.blobFromImage gives; plane by plane is twice as fast as one strided
        # transpose (0.18 vs 0.38 ms at 640x360).
        for channel, plane in enumerate(cv2.split(image)):
            self._blob[0, channel, :h, :w] = plane
        return self._blob

    def detect(self, image: np.ndarray) -> np.ndarray:
        blob = self._input(image)
        outputs = self.session.run(OUTPUTS, {self.input_name: blob})
        rows = []
        for i, (stride, grid) in enumerate(zip(STRIDES, anchor_grids(*blob.shape[2:]))):
            cls, obj, bbox, kps = (outputs[i + k * len(STRIDES)][0] for k in range(4))
            score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = np.flatnonzero(score >= self.score_threshold)
            if not len(keep):
                continue
            cell = grid[keep]
            centre = (cell + bbox[keep, :2]) * stride
            size = np.exp(bbox[keep, 2:]) * stride
            landmarks = (kps[keep].reshape(-1, 5, 2) + cell[:, None, :]) * stride
            rows.append(np.concatenate([centre - size / 2, size, landmarks.reshape(-1, 10), score[keep, None]], 1))
        if not rows:
            return np.zeros((0, 15), np.float32)
        faces = np.concatenate(rows).astype(np.float32)
        if len(faces) > 1:
            # OpenCV's FaceDetectorYN suppresses overlaps on integer boxes; so do we, to give the same faces.
            boxes = faces[:, :4].astype(np.int32).tolist()
            keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_threshold,
                                    top_k=self.top_k)
            faces = faces[np.asarray(keep, np.int64).reshape(-1)]
        return faces


class YuNetOpenCV:
    """YuNet through OpenCV's FaceDetectorYN; ``detect`` gives the same rows as ``YuNetOnnx.detect``."""

    def __init__(self, path: Path, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000):
        self._input_size: tuple[int, int] | None = None
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, top_k)
        except cv2.error as exc:
            raise FerError(f"OpenCV cannot load the YuNet model {path}: {exc.msg.strip()}") from exc

    def detect(self, image: np.ndarray) -> np.ndarray:
        size = (image.shape[1], image.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, faces = self._net.detect(image)
        return np.zeros((0, 15), np.float32) if faces is None else faces
