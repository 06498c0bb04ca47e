"""When a tracked face is classified again: the re-classification policy and what it remembers per track.

A face's expression changes over hundreds of milliseconds and a face moves a few pixels between two frames,
so classifying every face on every frame mostly repeats the last answer. With the ``changed`` policy a track
keeps its last probabilities until its face changes enough — its box moved or rescaled beyond a share of its
size, or its crop differs from the one last classified — or its last classification is older than an age
limit; new tracks are classified at once. ``every`` classifies every face on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_engine.errors import FieldError

from .tracking import signature_change

POLICIES = ("every", "changed")


@dataclass(frozen=True)
class ReclassifyPolicy:
    mode: str = "every"
    max_shift: float = 0.15  # box centre moved by more than this share of the box side since it was classified
    max_scale: float = 0.15  # box side changed by more than this share
    max_crop_change: float = 0.5  # mean absolute difference of the crop signatures (tracking.py), deviations
    max_age_ms: float = 500.0  # classified again at least this often

    def __post_init__(self) -> None:
        if self.mode not in POLICIES:
            raise FieldError("mode", f"must be one of {', '.join(POLICIES)}, got {self.mode!r}")
        for name in ("max_shift", "max_scale", "max_crop_change", "max_age_ms"):
            if getattr(self, name) < 0:
                raise FieldError(name, f"cannot be negative, got {getattr(self, name)}")


@dataclass
class _Classified:
    box: np.ndarray
    signature: np.ndarray
    time: float


class ClassificationMemory:
    """Per track of one source: the box, crop signature and time of its last classification."""

    def __init__(self, policy: ReclassifyPolicy):
        self.policy = policy
        self._last: dict[int, _Classified] = {}

    def select(self, track_ids: list[int], boxes: np.ndarray, signatures: np.ndarray | None,
               time: float) -> np.ndarray:
        """Which of these faces to classify now (a bool per face); those are remembered as classified."""
        chosen = np.ones(len(track_ids), bool)
        if self.policy.mode == "every":
            return chosen
        for i, track_id in enumerate(track_ids):
            last = self._last.get(track_id)
            chosen[i] = last is None or self._changed(last, boxes[i], signatures[i], time)
            if chosen[i]:
                self._last[track_id] = _Classified(boxes[i].copy(), signatures[i], time)
        return chosen

    def _changed(self, last: _Classified, box: np.ndarray, signature: np.ndarray, time: float) -> bool:
        policy = self.policy
        side = max(float(np.sqrt(last.box[2] * last.box[3])), 1.0)
        shift = np.hypot(*(box[:2] + box[2:] / 2 - last.box[:2] - last.box[2:] / 2)) / side
        scale = abs(float(np.sqrt(box[2] * box[3])) / side - 1.0)
        return (shift > policy.max_shift or scale > policy.max_scale
                or signature_change(signature, last.signature) > policy.max_crop_change
                or (time - last.time) * 1000.0 >= policy.max_age_ms)

    def forget(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self._last.pop(track_id, None)
