"""The formats fer-engine writes and runs, in one table: what each file is called, its precision, which
function in ``fer_engine.export`` makes it, which runtime class runs it, how fer-export verifies it and
whether it needs a GPU.

``fer-export`` writes the formats its flags select, in table order; its verifier takes the thresholds from
here; ``fer_engine.runtime.backends`` picks a runtime class by the file's suffix; ``fer-eval`` and
``fer-bench`` find files and names here. Producers and runtime classes are named ``"module:attribute"`` and
imported only when used, so this module imports nothing heavy (docs/architecture.md, "Formats").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from pathlib import PurePath
from typing import Any, Iterable

from .errors import FerError
from .spec import did_you_mean


@dataclass(frozen=True)
class Thresholds:
    """Limits of an export against the PyTorch model it came from; ``None``: not judged by that measure."""

    max_abs_diff: float | None = None  # max |Δlogit|, at most
    correlation: float | None = None  # logit correlation with PyTorch's, at least
    agreement: float | None = None  # top-1 agreement with PyTorch, at least (a fraction)
    accuracy_drop: float | None = None  # accuracy lost on labelled faces, at most (a fraction)

    def judged_by(self) -> list[str]:
        return sorted(f.name for f in fields(self) if getattr(self, f.name) is not None)


@dataclass(frozen=True)
class Format:
    name: str  # onnx-int8: fer-bench rows and lookups
    kind: str  # the container, "onnx" or "tensorrt"; engines are listed under this key in export_report.json
    precision: str  # the spec's precision (fp32, fp16, int8)
    file: str  # file-name pattern: {model}, and for engines {max_batch}, {dla} and {sm}
    suffixes: tuple[str, ...]  # the pattern's suffix first, then others the runtime also reads
    producer: str  # "module:function" in fer_engine.export: (ExportJob, Format) -> Produced
    runtime: str  # "module:Class" in fer_engine.runtime that runs the file
    flags: tuple[str, ...]  # fer-export flags that select it, all of them; () = always written
    needs_gpu: bool  # worth running on a GPU only (TensorRT engines; onnxruntime's CPU kernels upcast fp16)
    source: str | None = None  # the format it is made from; None: from the PyTorch model
    trained: Thresholds | None = None  # verification of trained weights: judged by decisions
    untrained: Thresholds | None = None  # untrained weights: nearly uniform logits, judged by the logits

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    @property
    def verified(self) -> bool:
        """fer-export compares the file with PyTorch (engines, built for one GPU, are listed, not compared)."""
        return self.trained is not None

    def file_name(self, **values: Any) -> str:
        return self.file.format(**values)

    def thresholds(self, trained: bool) -> Thresholds:
        limits = self.trained if trained else self.untrained
        if limits is None:
            raise FerError(f"{self.name} files are not verified against PyTorch")
        return limits


_ONNX = "fer_engine.runtime.onnx_model:OnnxClassifier"
_TENSORRT = "fer_engine.runtime.tensorrt_model:TensorRTClassifier"
_ENGINE = "fer_engine.export.tensorrt:produce_engine"
# Untrained thresholds measured on full-size models (256 faces): int8 ConvNeXt-T (static) 0.9961 and
# ViT-B/16 (dynamic) 0.9956 logit correlation while their top-1 agreement was 96.1 % and 97.7 %; the tiny
# test models score 0.993 to 0.999.
FORMATS: tuple[Format, ...] = (
    Format("onnx-fp32", "onnx", "fp32", "{model}.onnx", (".onnx",), "fer_engine.export.onnx_export:produce_fp32",
           _ONNX, (), False,
           trained=Thresholds(max_abs_diff=1e-3, agreement=0.999),
           untrained=Thresholds(max_abs_diff=1e-3, correlation=0.9999)),
    Format("onnx-int8", "onnx", "int8", "{model}-int8.onnx", (".onnx",), "fer_engine.export.quantize:produce_int8",
           _ONNX, ("int8",), False, "onnx-fp32",
           trained=Thresholds(agreement=0.98, accuracy_drop=0.005), untrained=Thresholds(correlation=0.98)),
    Format("onnx-fp16", "onnx", "fp16", "{model}-fp16.onnx", (".onnx",), "fer_engine.export.fp16:produce_fp16",
           _ONNX, ("fp16",), True, "onnx-fp32",
           trained=Thresholds(agreement=0.995), untrained=Thresholds(correlation=0.999)),
    Format("tensorrt-fp16", "tensorrt", "fp16", "{model}_b1-{max_batch}_fp16{dla}_sm{sm}.engine", (".engine", ".plan"),
           _ENGINE, _TENSORRT, ("tensorrt",), True, "onnx-fp32"),
    Format("tensorrt-int8", "tensorrt", "int8", "{model}_b1-{max_batch}_int8{dla}_sm{sm}.engine", (".engine", ".plan"),
           _ENGINE, _TENSORRT, ("tensorrt", "int8"), True, "onnx-fp32"),
)


def format_named(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    names = [f.name for f in FORMATS]
    raise FerError(f"unknown format '{name}': choose {', '.join(names)}.{did_you_mean(name, names)}")


def formats_of_kind(kind: str) -> list[Format]:
    return [f for f in FORMATS if f.kind == kind]


def format_for(kind: str, precision: str) -> Format:
    """The ``kind`` format (onnx, tensorrt) of a precision."""
    for fmt in formats_of_kind(kind):
        if fmt.precision == precision:
            return fmt
    known = ", ".join(f.precision for f in formats_of_kind(kind)) or "none"
    raise FerError(f"there is no {precision} {kind} format (known: {known})")


def format_of(path: str | PurePath, precision: str) -> Format:
    """The format of a file, from its suffix and the precision its spec records."""
    suffix = PurePath(path).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes and fmt.precision == precision:
            return fmt
    raise FerError(f"{PurePath(path).name}: no {precision} format is written as a '{suffix}' file")


def kind_of(path: str | PurePath) -> str | None:
    """The kind of format (onnx, tensorrt) a file's suffix says it is; None for a suffix no format has."""
    suffix = PurePath(path).suffix.lower()
    return next((f.kind for f in FORMATS if suffix in f.suffixes), None)


def suffixes() -> list[str]:
    """Every model-file suffix a runtime reads, in table order."""
    return list(dict.fromkeys(s for f in FORMATS for s in f.suffixes))


def suffix_runtimes() -> dict[str, str]:
    """Model-file suffix → the runtime class (``"module:Class"``) that runs it."""
    return {s: f.runtime for f in FORMATS for s in f.suffixes}


def export_flags() -> set[str]:
    """The fer-export flags that select formats."""
    return {flag for f in FORMATS for flag in f.flags}


def selected_formats(flags: Iterable[str]) -> list[Format]:
    """The formats the given fer-export flags ask for, in table order (a format's source comes before it)."""
    flags = set(flags)
    return [f for f in FORMATS if set(f.flags) <= flags]


def import_ref(ref: str) -> Any:
    """The object a ``"module:attribute"`` reference names, imported now."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)
