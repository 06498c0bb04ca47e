"""What a producer of a format (``Format.producer`` in fer_engine.formats) is given and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fer_engine.formats import Format, import_ref

from .triton_repo import DEFAULT_MAX_BATCH


@dataclass(frozen=True)
class Produced:
    path: Path
    label: str  # how fer-export's line names it: "fp32", "int8 (static)", "engine"
    report: dict = field(default_factory=dict)  # what it adds to export_report.json (int8_mode)


@dataclass
class ExportJob:
    """One model exported to formats in table order; each producer finds its source in ``made``."""

    built: object  # fer_engine.train.models.BuiltModel
    out: Path
    opset: int = 17
    int8_mode: str = "auto"  # auto, static or dynamic
    calibration: object = None  # uint8 faces [N, 48, 48] for static int8 and TensorRT int8, or None
    calibration_method: str = "minmax"
    max_batch: int = DEFAULT_MAX_BATCH  # of TensorRT profiles
    dla_core: int | None = None
    made: dict[str, Path] = field(default_factory=dict)  # format name -> file

    def path(self, fmt: Format) -> Path:
        return self.out / fmt.file_name(model=self.built.spec.model)

    def source(self, fmt: Format) -> Path:
        return self.made[fmt.source]

    def produce(self, fmt: Format) -> Produced:
        made = import_ref(fmt.producer)(self, fmt)
        self.made[fmt.name] = made.path
        return made
