"""fp16 ONNX for GPUs: weights and activations in half precision, float32 inputs and outputs kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx

from fer_engine.formats import Format

from .job import ExportJob, Produced
from .onnx_export import save_model


def convert_fp16(fp32_path: Path, out: Path, spec) -> Path:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    half = convert_float_to_float16(model, keep_io_types=True)
    save_model(half, dataclasses.replace(spec, precision="fp16"), out)
    return out


def produce_fp16(job: ExportJob, fmt: Format) -> Produced:
    return Produced(convert_fp16(job.source(fmt), job.path(fmt), job.built.spec), fmt.precision)
