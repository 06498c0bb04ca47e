"""Checkpoint folders: ``config.json`` (the ``fer`` spec, the model name and its architecture), the
weights (``model.safetensors`` or transformers' ``save_pretrained`` files), ``metrics.json``.

A folder is written beside its final place and renamed into it, so an interrupted save never leaves a
half-written checkpoint that looks valid.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from torch import nn

from fer_engine.errors import FerError
from fer_engine.outputs import write_folder_atomically
from fer_engine.spec import ModelSpec

from .models import BuiltModel, get_family

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


@dataclass
class Checkpoint:
    folder: Path
    module: nn.Module
    spec: ModelSpec
    arch: dict
    metrics: dict = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        return self.spec.model


def save_checkpoint(folder: str | Path, built: BuiltModel, metrics: dict | None = None,
                    write_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``folder`` whole or not at all; ``write_extra(tmp_folder)`` adds files of the caller's."""
    def fill(tmp: Path) -> None:
        config = {"fer": built.spec.to_metadata(), "arch": built.arch}
        get_family(built.spec.model).save_weights(built, tmp, config)
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        if write_extra is not None:
            write_extra(tmp)
        for written in tmp.iterdir():
            os.chmod(written, 0o644)  # safetensors writes 0600; a checkpoint is meant to be shared like the rest

    return write_folder_atomically(folder, fill)


def read_checkpoint_config(folder: str | Path) -> tuple[ModelSpec, dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FerError(f"checkpoint folder not found: {folder}")
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise FerError(f"{folder} is not a fer-engine checkpoint: it has no {CONFIG_FILE}")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FerError(f"{config_file} is corrupt: {exc}") from exc
    if "fer" not in config:
        raise FerError(f"{config_file} has no 'fer' section: it was not written by fer-train")
    spec = ModelSpec.from_metadata(config["fer"])
    return spec, config.get("arch") or config.get("fer_arch") or {}


def load_checkpoint(folder: str | Path, expect_model: str | None = None) -> Checkpoint:
    folder = Path(folder)
    spec, arch = read_checkpoint_config(folder)
    if expect_model and spec.model != expect_model:
        raise FerError(f"{folder} holds a '{spec.model}' model, not '{expect_model}'")
    family = get_family(spec.model)
    try:
        module = family.load(folder, spec, arch)
    except FerError:
        raise
    except Exception as exc:  # safetensors, torch and transformers raise many types for a broken file
        raise FerError(f"cannot load the weights in {folder}: {exc}") from exc
    module.eval()
    metrics = {}
    if (folder / METRICS_FILE).is_file():
        try:
            metrics = json.loads((folder / METRICS_FILE).read_text())
        except json.JSONDecodeError:
            metrics = {}
    return Checkpoint(folder, module, spec, arch, metrics)
