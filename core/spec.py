"""Contracts shared by train, export and runtime: the label order and a model's preprocessing spec.

The spec travels with every model (checkpoint ``config.json`` and the ONNX ``fer`` metadata), so nothing
downstream assumes a label order, an input size or a normalisation.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .errors import FerError

# FER2013's order (0..6). Every source is mapped onto it; every model carries it.
LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
FORMAT_VERSION = 1


# Spellings of the seven emotions found in published emotion models' ``id2label`` (compared lower-case).
LABEL_SYNONYMS: dict[str, str] = {
    "angry": "angry", "anger": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "neutrality": "neutral",
}


def canonical_label(name: str) -> str | None:
    """Our name for an emotion label as another model spells it ('Happiness' -> 'happy'), or None."""
    return LABEL_SYNONYMS.get(str(name).strip().lower())


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class ModelSpec:
    """How to turn a gray face crop into the model's input, and what its outputs mean.

    ``pixel_values = (gray / 255 - mean) / std``, the gray crop resized to ``image_size`` and replicated
    to ``channels``. ``crop_margin`` widens the detector box (a fraction of its size) before cropping.
    """

    model: str
    image_size: tuple[int, int] = (48, 48)
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    labels: tuple[str, ...] = LABELS
    crop_margin: float = 0.0
    precision: str = "fp32"
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} values, got {self.mean} / {self.std}")
        if len(self.labels) < 2:
            raise ValueError("a classifier needs at least two labels")

    def to_metadata(self) -> dict:
        """The ``fer`` JSON object of docs/architecture.md."""
        meta = {
            "format": FORMAT_VERSION,
            "labels": list(self.labels),
            "image_size": list(self.image_size),
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "model": self.model,
            "precision": self.precision,
            "crop_margin": self.crop_margin,
        }
        meta.update(self.extra)
        return meta

    def to_json(self) -> str:
        return json.dumps(self.to_metadata())

    @classmethod
    def from_metadata(cls, meta: dict) -> "ModelSpec":
        known = {"format", "labels", "image_size", "channels", "mean", "std", "model", "precision", "crop_margin"}
        if meta.get("format") != FORMAT_VERSION:
            raise FerError(f"unsupported fer metadata format {meta.get('format')!r} (this version reads {FORMAT_VERSION})")
        try:
            return cls(
                model=meta["model"],
                image_size=tuple(int(v) for v in meta["image_size"]),
                channels=int(meta["channels"]),
                mean=tuple(float(v) for v in meta["mean"]),
                std=tuple(float(v) for v in meta["std"]),
                labels=tuple(meta["labels"]),
                crop_margin=float(meta.get("crop_margin", 0.0)),
                precision=meta.get("precision", "fp32"),
                extra={k: v for k, v in meta.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FerError(f"malformed fer metadata ({exc}): {meta}") from exc

    def label_index(self, names: Sequence[str] = LABELS) -> list[int]:
        """Column of each canonical label in this model's output (models may order labels differently)."""
        return [self.labels.index(n) for n in names]
