"""What ``fer-eval`` (and later ``fer-bench``) can evaluate, chosen by the kind of path.

Each loader returns a ``Classifier`` (fer_engine.runtime.classifier): its ``spec``, ``predict_logits`` and
``predict_probs(faces)`` for uint8 gray faces; this module only adds the PyTorch loader.
A checkpoint folder runs in PyTorch; exported files (any suffix of the format table, fer_engine.formats) and
``triton://`` URLs through the runtime's backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_engine.errors import FerError
from fer_engine.formats import suffixes
from fer_engine.runtime.classifier import BatchedClassifier, Classifier
from fer_engine.spec import ModelSpec


@dataclass
class TorchClassifier(BatchedClassifier):
    """A PyTorch module behind the runtime's classifier interface (``predict_probs`` is the runtime's)."""

    spec: ModelSpec
    module: object
    device: str
    description: str
    metrics: dict

    def predict_logits(self, pixel_values: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixel_values, np.float32)).to(self.device)
            return self.module(x).float().cpu().numpy()


def _load_checkpoint_folder(path: Path, device: str) -> TorchClassifier:
    from .checkpoint import load_checkpoint
    from .trainer import resolve_device

    torch_device = resolve_device(device)
    ckpt = load_checkpoint(path)
    return TorchClassifier(ckpt.spec, ckpt.module.to(torch_device), str(torch_device),
                           f"{ckpt.model_name} checkpoint {path} (PyTorch, {torch_device})", ckpt.metrics)


def load_pretrained(model: str, source: str | None, device: str = "auto", new_head: bool = False) -> TorchClassifier:
    """A Hugging Face model (hub id or folder) as it would be imported by fer-train: an emotion head kept with
    its labels mapped onto ours. ``source`` None takes the family's published FER2013 fine-tune."""
    from .models import get_family
    from .trainer import resolve_device

    family = get_family(model)
    source = source or family.finetuned_id
    if source is None:
        raise FerError(f"'{model}' has no published fine-tune to default to: pass --pretrained ID_OR_DIR, "
                       f"or give a checkpoint folder or an exported file")
    built = family.create(pretrained=source, new_head=new_head)
    torch_device = resolve_device(device)
    return TorchClassifier(built.spec, built.module.eval().to(torch_device), str(torch_device),
                           f"{model} {source} (PyTorch, {torch_device}; {built.arch.get('head', '')})", {})


def _providers(device: str) -> list[str]:
    """onnxruntime's providers for --device (engines and served models run where they were built or served)."""
    from fer_engine.runtime.providers import available_providers

    if device == "cuda":  # CUDA or a clear error, never a quiet run on the CPU
        return ["CUDAExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _load_runtime(model: str | Path, device: str) -> Classifier:
    """An exported file or a served model, through the runtime's backends (chosen by the format table)."""
    from fer_engine.runtime.backends import load_classifier as load_runtime_classifier

    return load_runtime_classifier(str(model), providers=_providers(device))


def load_classifier(path: str | Path, device: str = "auto") -> Classifier:
    if "://" in str(path):  # a served model, e.g. triton://host:8001/cnn_int8
        return _load_runtime(str(path), device)
    path = Path(path)
    if not path.exists():
        raise FerError(f"model not found: {path}")
    if path.is_dir():
        return _load_checkpoint_folder(path, device)
    if path.suffix.lower() not in suffixes():
        raise FerError(f"cannot evaluate '{path}': this version reads checkpoint folder, {', '.join(suffixes())}")
    return _load_runtime(path, device)
