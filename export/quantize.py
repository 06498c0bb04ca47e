"""int8 ONNX: static QDQ quantization calibrated on FER2013 Training faces (onnxruntime's
``quantize_static``), or dynamic quantization through optimum's ``ORTQuantizer``.

Which mode is faster depends on the architecture: convolutions run on VNNI/AMX int8 kernels only when
their activations are quantized ahead of time (static), while dynamic quantization turns them into slow
``ConvInteger`` ops; transformers' MatMuls gain most from dynamic quantization. Each family's ``int8_mode`` holds the
faster mode per architecture, measured on this project's CPU (2-core Sapphire Rapids, batch 1,
2 threads, full-size architectures; fp32 / static QDQ / dynamic, p50): ViT-B/16 158 / 67 / 51 ms (dynamic);
ConvNeXt-T 75 / 39 / 190 ms (static); ConvNeXt-V2-T-384 225 / 177 / 472 ms (static); cnn at batch 64:
42 / 16 / 456 ms (static; see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from fer_engine.errors import FerError, FieldError
from fer_engine.formats import Format
from fer_engine.runtime.preprocess import faces_to_pixel_values

from .job import ExportJob, Produced
from .onnx_export import save_model

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


NEEDS_CALIBRATION = ("static int8 needs calibration faces: pass --calibration-data fer2013.csv.gz "
                     "(or an image-folder root), or --int8-mode dynamic")


def resolve_mode(mode: str, model: str) -> str:
    """``auto`` becomes the faster mode for the architecture."""
    if mode == "auto":
        from fer_engine.train.models import get_family

        return get_family(model).int8_mode
    if mode not in ("static", "dynamic"):
        raise FieldError("int8_mode", f"'{mode}' is unknown: choose auto, static or dynamic")
    return mode


def calibration_faces(data_path: str | None, size: int, seed: int = 0, skip_bad_rows: bool = False) -> np.ndarray:
    """``size`` Training faces of the file chosen by a fixed seed, as uint8 [N, 48, 48]."""
    from fer_engine.train.data import load_fer2013

    if not data_path:
        raise FerError(NEEDS_CALIBRATION)
    return pick_calibration_faces(load_fer2013(data_path, skip_bad_rows=skip_bad_rows), size, seed)


def pick_calibration_faces(data, size: int, seed: int = 0) -> np.ndarray:
    """``size`` Training faces (every face where there is no Training split) of a loaded ``FerData``."""
    if size < 1:
        raise FieldError("calibration_size", "must be at least 1")
    images = data.split("Training").images if (data.splits == 0).any() else data.images
    if len(images) == 0:
        raise FerError(f"{data.source} holds no faces to calibrate on")
    pick = np.random.default_rng(seed).choice(len(images), size=min(size, len(images)), replace=False)
    return images[np.sort(pick)]


# Faces per calibration batch, in input pixels: onnxruntime keeps every intermediate tensor of a batch while it
# calibrates it, which for ConvNeXt-V2 at 384×384 is several hundred MB per face.
CALIBRATION_BATCH_PIXELS = 4 * 224 * 224


def calibration_batch(spec) -> int:
    """32 faces at 48×48, 4 at 224×224, 1 at 384×384."""
    height, width = spec.image_size
    return max(1, min(32, CALIBRATION_BATCH_PIXELS // (height * width)))


class CalibrationBatches:
    """onnxruntime's CalibrationDataReader protocol over batches of ``pixel_values``, with the ``set_range``
    that its strided calibration (``CalibStridedMinMax``) uses to calibrate a few batches at a time."""

    def __init__(self, batches: list[np.ndarray]):
        self.batches = batches
        self.position, self.end = 0, len(self.batches)

    @classmethod
    def of_faces(cls, faces: np.ndarray, spec, batch_size: int = 32) -> "CalibrationBatches":
        return cls([faces_to_pixel_values(faces[i:i + batch_size], spec) for i in range(0, len(faces), batch_size)])

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.position, self.end = start_index, min(end_index, len(self.batches))

    def get_next(self):
        if self.position >= self.end:
            return None
        self.position += 1
        return {"pixel_values": self.batches[self.position - 1]}

    def rewind(self):
        self.position, self.end = 0, len(self.batches)


# Weights are quantized to 7 bits (reduce_range). On x86 CPUs without VNNI (AVX2, or AVX-512 without
# VNNI) onnxruntime's u8s8 kernels use VPMADDUBSW, whose 16-bit sums saturate with full-range weights:
# measured on an AMD EPYC (AVX2), the full-range cnn int8 model lost 4.5 points of PublicTest accuracy and
# ran slower than fp32; with 7-bit weights it is within half a point of fp32 and 1.5x faster. VNNI CPUs
# compute the same integers either way.
def quantize_static_qdq(fp32_path: Path, out: Path, spec, faces: np.ndarray, method: str = "minmax") -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise FerError(f"unknown calibration method '{method}': choose {', '.join(CALIBRATION_METHODS)}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="fer-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        from fer_engine.train.models import get_family

        quant_pre_process(str(fp32_path), str(prepared),
                          skip_symbolic_shape=not get_family(spec.model).symbolic_shape_inference)
        raw = Path(tmp) / "int8.onnx"
        batch = calibration_batch(spec)
        quantize_static(str(prepared), str(raw), CalibrationBatches.of_faces(faces, spec, batch), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calibrate, reduce_range=True,
                        # MinMax keeps every activation of every batch until the end unless it calibrates
                        # batch by batch (ConvNeXt-V2 at 384x384 went past 24 GB on 100 faces). Not
                        # CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the batches it counts.
                        extra_options={"CalibTensorRangeSymmetric": False, "CalibStridedMinMax": 1})
        return _finish(raw, out, spec, "static")


def quantize_dynamic_optimum(fp32_path: Path, out: Path, spec) -> Path:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    with tempfile.TemporaryDirectory(prefix="fer-int8-") as tmp:
        shutil.copy(fp32_path, Path(tmp) / "model.onnx")
        quantizer = ORTQuantizer.from_pretrained(tmp, file_name="model.onnx")
        config = dataclasses.replace(AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True), reduce_range=True)
        quantizer.quantize(save_dir=Path(tmp) / "q", quantization_config=config)
        produced = next((Path(tmp) / "q").glob("*.onnx"))
        return _finish(produced, out, spec, "dynamic")


def _finish(raw: Path, out: Path, spec, mode: str) -> Path:
    model = onnx.load(str(raw))
    save_model(model, dataclasses.replace(spec, precision="int8", extra={**spec.extra, "int8_mode": mode}), out)
    return out


def quantize(fp32_path: Path, out: Path, spec, mode: str, faces: np.ndarray | None,
             method: str = "minmax") -> tuple[Path, str]:
    """int8 in ``mode`` (auto, static or dynamic); static calibrates on ``faces`` (uint8 [N, 48, 48])."""
    mode = resolve_mode(mode, spec.model)
    if mode == "dynamic":
        return quantize_dynamic_optimum(fp32_path, out, spec), mode
    if faces is None or len(faces) == 0:
        raise FerError(NEEDS_CALIBRATION)
    return quantize_static_qdq(fp32_path, out, spec, faces, method), mode


def produce_int8(job: ExportJob, fmt: Format) -> Produced:
    path, mode = quantize(job.source(fmt), job.path(fmt), job.built.spec, job.int8_mode, job.calibration,
                          job.calibration_method)
    return Produced(path, f"{fmt.precision} ({mode})", {"int8_mode": mode})
