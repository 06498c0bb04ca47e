"""TensorRT engines from the exported ONNX file: fp16, or int8 calibrated (entropy calibrator) on the same
FER2013 Training faces as the ONNX int8 model, with the calibration cache saved and reused.

Written against the documented Python API of TensorRT 8.6 and 10.x (JetPack 6 ships 8.6 and 10.3).
``tensorrt`` is imported only here, inside the builder: it comes with JetPack on a Jetson and with
NVIDIA's containers on servers, and cannot be installed from PyPI alone. Engines are specific to the GPU
and TensorRT version that built them, so the file is named by its build parameters and the GPU
(``cnn_b1-32_int8_sm87.engine``) and carries the ``fer`` metadata beside it (``.engine.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_engine.errors import FerError
from fer_engine.formats import Format, format_for, format_named
from fer_engine.modelfile import engine_build_facts, write_engine_sidecar
from fer_engine.outputs import write_atomically
from fer_engine.runtime.cuda import DeviceBuffer, gpu_compute_capability, gpu_device_name, import_tensorrt
from fer_engine.runtime.preprocess import faces_to_pixel_values

from .job import ExportJob, Produced


@dataclass(frozen=True)
class EngineRequest:
    onnx_path: Path
    out_dir: Path
    precision: str  # "fp16" | "int8"
    max_batch: int = 32
    opt_batch: int | None = None
    workspace_mb: int = 1024
    dla_core: int | None = None

    def shapes(self, spec) -> dict[str, tuple[int, ...]]:
        chw = (spec.channels, *spec.image_size)
        opt = self.opt_batch or max(1, min(8, self.max_batch))
        return {"min": (1, *chw), "opt": (opt, *chw), "max": (self.max_batch, *chw)}

    def engine_name(self, spec, sm: str) -> str:
        dla = f"_dla{self.dla_core}" if self.dla_core is not None else ""
        engine = format_for("tensorrt", self.precision)
        return engine.file_name(model=spec.model, max_batch=self.max_batch, dla=dla, sm=sm)


def build_key(request: EngineRequest, spec, sm: str, tensorrt_version: str, device: str,
              calibration: np.ndarray | None) -> dict:
    """Everything that makes two engines differ. An engine on disk is reused only when its recorded key
    is this one: same ONNX content (not its date), shapes, precision, workspace, DLA core, calibration
    faces, TensorRT version and GPU (two boards with the same compute capability can differ)."""
    faces = None
    if request.precision == "int8" and calibration is not None:
        faces = hashlib.sha256(np.ascontiguousarray(calibration).tobytes()).hexdigest()
    return {"tensorrt": tensorrt_version, "sm": sm, "device": device, "precision": request.precision,
            "onnx_sha256": hashlib.sha256(request.onnx_path.read_bytes()).hexdigest(),
            "shapes": {k: list(v) for k, v in request.shapes(spec).items()}, "workspace_mb": request.workspace_mb,
            "dla_core": request.dla_core, "calibration_sha256": faces}


def engine_is_current(engine_path: Path, key: dict) -> bool:
    return engine_path.is_file() and engine_build_facts(engine_path).get("key") == key


def trtexec_command(request: EngineRequest, spec, engine_path: Path, calibration_cache: Path | None = None) -> str:
    """The equivalent ``trtexec`` call, for users who build engines with NVIDIA's CLI."""
    shapes = request.shapes(spec)
    fmt = lambda s: "pixel_values:" + "x".join(map(str, s))  # noqa: E731
    parts = ["trtexec", f"--onnx={request.onnx_path}", f"--saveEngine={engine_path}",
             f"--minShapes={fmt(shapes['min'])}", f"--optShapes={fmt(shapes['opt'])}", f"--maxShapes={fmt(shapes['max'])}",
             f"--memPoolSize=workspace:{request.workspace_mb}M", "--fp16"]
    if request.precision == "int8":
        parts.append("--int8")
        if calibration_cache:
            parts.append(f"--calib={calibration_cache}")
    if request.dla_core is not None:
        parts += [f"--useDLACore={request.dla_core}", "--allowGPUFallback"]
    return " ".join(parts)


def _make_calibrator(trt, faces: np.ndarray, spec, batch_size: int, cache_file: Path):
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = [faces_to_pixel_values(faces[i:i + batch_size], spec)
                            for i in range(0, len(faces) - batch_size + 1, batch_size)]
            self.buffer = DeviceBuffer(self.batches[0].nbytes) if self.batches else None
            self.index = 0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            if self.index >= len(self.batches):
                return None
            self.index += 1
            return [self.buffer.upload(self.batches[self.index - 1])]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache):
            cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()


def build_engine(request: EngineRequest, spec, calibration: np.ndarray | None = None, log=print) -> Path:
    """Build (or reuse) the engine for ``request``; returns its path."""
    trt = import_tensorrt()
    sm = gpu_compute_capability()
    request.out_dir.mkdir(parents=True, exist_ok=True)
    engine_path = request.out_dir / request.engine_name(spec, sm)
    key = build_key(request, spec, sm, trt.__version__, gpu_device_name(), calibration)
    if engine_is_current(engine_path, key):
        log(f"engine up to date: {engine_path}")
        return engine_path
    # The calibration cache belongs to one ONNX file and one set of calibration faces.
    prefix = f"{spec.model}_{key['onnx_sha256'][:12]}"
    if key["calibration_sha256"]:
        cache_file = request.out_dir / f"{prefix}_{key['calibration_sha256'][:12]}_int8_calibration.cache"
    else:
        earlier = sorted(request.out_dir.glob(f"{prefix}_*_int8_calibration.cache"), key=lambda p: p.stat().st_mtime)
        cache_file = earlier[-1] if earlier else request.out_dir / f"{prefix}_int8_calibration.cache"

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(request.onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FerError(f"TensorRT cannot parse {request.onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mb << 20)
    profile = builder.create_optimization_profile()
    shapes = request.shapes(spec)
    profile.set_shape("pixel_values", shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    config.set_flag(trt.BuilderFlag.FP16)  # int8 engines keep fp16 for the layers left unquantized
    if request.precision == "int8":
        if calibration is None and not cache_file.is_file():
            raise FerError("an int8 engine needs calibration faces: pass --calibration-data")
        config.set_flag(trt.BuilderFlag.INT8)
        faces = calibration if calibration is not None else np.zeros((0, 48, 48), np.uint8)
        config.int8_calibrator = _make_calibrator(trt, faces, spec, min(32, request.max_batch), cache_file)
        config.set_calibration_profile(profile)
    if request.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = request.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    log(f"building {engine_path.name} with TensorRT {trt.__version__} (minutes on a Jetson)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FerError("TensorRT failed to build the engine (see its log above)")
    write_atomically(engine_path, lambda tmp: tmp.write_bytes(bytes(serialized)))
    write_engine_sidecar(engine_path, dataclasses.replace(spec, precision=request.precision),
                         {"onnx": str(request.onnx_path), "max_batch": request.max_batch, "key": key})
    return engine_path


def engine_request(job: ExportJob, fmt: Format) -> EngineRequest:
    """What ``job`` asks of the engine ``fmt``, built from the ONNX file of its source format."""
    return EngineRequest(job.path(format_named(fmt.source)), job.out, fmt.precision, job.max_batch,
                         dla_core=job.dla_core)


def produce_engine(job: ExportJob, fmt: Format) -> Produced:
    """The engine of ``fmt``'s precision (an fp16 build ignores the calibration faces)."""
    return Produced(build_engine(engine_request(job, fmt), job.built.spec, job.calibration), "engine")
