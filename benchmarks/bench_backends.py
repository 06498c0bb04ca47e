"""What fer-bench can time: one registry of backends, each able to say why it cannot run here.

A backend turns a ``Case`` (a model: its PyTorch module, spec and where it came from) into a
``Runner``: ``logits(pixel_values)`` for timing and ``probs(faces)`` for accuracy. ONNX files and engines
are made once per case into the work folder by their format's producer (fer_engine.formats), or taken from
``Case.files`` when given (the shipped files).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fer_engine.formats import Format, format_named, formats_of_kind

from .environment import cpu_has_bf16

# The largest batch timed on the CPU, in input pixels (faces × height × width): 16 faces at ConvNeXt-V2's
# 384×384, 47 at 224×224. onnxruntime's fp32 ConvNeXt-V2 alone peaked at 3.7 GB resident at batch 32 and
# 2.0 GB at 16 (its memory arena and planned buffers), which with fer-bench's own ~1.5 GB went past the
# 4 GB that --all-models keeps under (README). 48×48 faces are never capped in practice (1,024 fit).
CPU_BATCH_PIXELS = 16 * 384 * 384
# Faces per call of the accuracy pass, in pixels: 256 faces at 48×48.
ACCURACY_BATCH_PIXELS = 256 * 48 * 48


def cpu_batch_limit(spec) -> int:
    """The largest batch of ``spec``'s input size that fer-bench times on the CPU."""
    height, width = spec.image_size
    return max(1, CPU_BATCH_PIXELS // (height * width))


def accuracy_batch(spec) -> int:
    """Faces per call of the accuracy pass: 256 at 48×48, 11 at 224×224, 4 at 384×384."""
    height, width = spec.image_size
    return max(1, min(256, ACCURACY_BATCH_PIXELS // (height * width)))


@dataclass
class Case:
    name: str
    built: object  # fer_engine.train.models.BuiltModel
    trained: bool
    source: str
    work_dir: Path
    calibration_data: str | None = None
    skip_bad_rows: bool = False
    files: dict[str, Path] = field(default_factory=dict)  # format name -> file, filled on demand

    @property
    def spec(self):
        return self.built.spec


@dataclass
class Runner:
    logits: Callable[[np.ndarray], object]
    probs: Callable[[np.ndarray], np.ndarray]
    size_mb: float | None = None


class TorchBackend:
    family = "PyTorch eager"

    def __init__(self, precision: str, device: str):
        self.precision, self.device = precision, device
        self.on_cpu = device == "cpu"
        self.name = f"pytorch-{precision}" + ("-cuda" if device == "cuda" else "")

    def skip_reason(self, case: Case) -> str | None:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA GPU"
        if self.device == "cpu" and self.precision == "bf16" and not cpu_has_bf16():
            return "this CPU has no bf16 instructions (avx512_bf16 / AMX)"
        return None

    def load(self, case: Case, threads: int | None) -> Runner:
        import torch

        from fer_engine.train.evaluate import predict_probs

        if threads:
            torch.set_num_threads(threads)
        module = case.built.module.eval().to(self.device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

        def autocast():
            return torch.autocast(self.device, dtype=dtype) if dtype else contextlib.nullcontext()

        @torch.inference_mode()
        def logits(x: np.ndarray):
            with autocast():
                out = module(torch.from_numpy(x).to(self.device))
            if self.device == "cuda":
                torch.cuda.synchronize()
            return out

        def probs(faces: np.ndarray) -> np.ndarray:
            with autocast():
                return predict_probs(module, case.spec, faces, device=self.device, batch_size=accuracy_batch(case.spec))

        size = sum(p.numel() * p.element_size() for p in module.parameters()) / 1e6
        return Runner(logits, probs, size)


class OnnxBackend:
    family = "onnxruntime"

    def __init__(self, fmt: Format, provider: str):
        self.format, self.provider = fmt, provider
        self.precision = fmt.precision
        short = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "trt"}
        self.name = f"{fmt.name}-{short.get(provider, provider)}"
        self.on_cpu = provider == "CPUExecutionProvider"

    def skip_reason(self, case: Case) -> str | None:
        import onnxruntime as ort

        if self.provider not in ort.get_available_providers():
            return f"{self.provider} not in this onnxruntime (install fer-engine[gpu] on a GPU machine)"
        return None

    def load(self, case: Case, threads: int | None) -> Runner:
        from fer_engine.runtime.backends import load_classifier

        path = produce(case, self.format)
        classifier = load_classifier(str(path), providers=[self.provider], threads=threads)
        batch = accuracy_batch(case.spec)
        return Runner(classifier.predict_logits, lambda faces: classifier.predict_probs(faces, batch_size=batch),
                      path.stat().st_size / 1e6)


class TensorRTBackend:
    family = "TensorRT"

    def __init__(self, fmt: Format):
        self.format, self.precision = fmt, fmt.precision
        self.name = fmt.name
        self.on_cpu = False

    def skip_reason(self, case: Case) -> str | None:
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "TensorRT is not installed"
        return None

    def load(self, case: Case, threads: int | None) -> Runner:
        from fer_engine.runtime.backends import load_classifier

        engine = produce(case, self.format)
        classifier = load_classifier(str(engine))
        batch = accuracy_batch(case.spec)
        return Runner(classifier.predict_logits, lambda faces: classifier.predict_probs(faces, batch_size=batch),
                      engine.stat().st_size / 1e6)


ENGINE_MAX_BATCH = 256
ENGINE_CALIBRATION_FACES = 512


def produce(case: Case, fmt: Format) -> Path:
    """The case's file in ``fmt`` (its source first), made once into its work folder by the format's producer."""
    if fmt.name in case.files:
        return case.files[fmt.name]
    from fer_engine.export.job import ExportJob

    if fmt.source:
        produce(case, format_named(fmt.source))
    case.work_dir.mkdir(parents=True, exist_ok=True)
    job = ExportJob(case.built, case.work_dir, opset=17, int8_mode="auto", calibration=calibration(case, fmt),
                    max_batch=ENGINE_MAX_BATCH, made=case.files)
    return job.produce(fmt).path


def calibration(case: Case, fmt: Format):
    """Calibration faces for an int8 format: always for an engine, for an ONNX file where its family
    quantizes statically."""
    if fmt.precision != "int8":
        return None
    from fer_engine.export.quantize import calibration_faces, resolve_mode
    from fer_engine.train.models import get_family

    if fmt.kind == "tensorrt":
        size = ENGINE_CALIBRATION_FACES
    elif resolve_mode("auto", case.name) == "static":
        size = get_family(case.name).calibration_faces
    else:
        return None
    if case.calibration_data is None and not case.trained:
        # Untrained weights are timed, never scored: drawn faces calibrate them as well as FER2013 would.
        from .face_video import drawn_faces

        return drawn_faces(size)
    return calibration_faces(case.calibration_data, size, skip_bad_rows=case.skip_bad_rows)


# onnxruntime rows beyond the CPU's (which time every ONNX format that does not need a GPU): CUDA runs fp32 and
# fp16, TensorRT's provider the int8 file.
GPU_ONNX_ROWS = (("onnx-fp32", "CUDAExecutionProvider"), ("onnx-fp16", "CUDAExecutionProvider"),
                 ("onnx-int8", "TensorrtExecutionProvider"))


def all_backends() -> list:
    return [
        TorchBackend("fp32", "cpu"), TorchBackend("bf16", "cpu"),
        TorchBackend("fp32", "cuda"), TorchBackend("fp16", "cuda"),
        *(OnnxBackend(f, "CPUExecutionProvider") for f in formats_of_kind("onnx") if not f.needs_gpu),
        *(OnnxBackend(format_named(name), provider) for name, provider in GPU_ONNX_ROWS),
        *(TensorRTBackend(f) for f in formats_of_kind("tensorrt")),
    ]
