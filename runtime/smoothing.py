"""Per-track smoothing of probabilities: an exponential moving average over frames.

``smooth`` is the weight of the past (0 = raw output). On a frame where a face was not classified again
(re-classification policy ``changed``), its track's last classified probabilities stand for the frame, so
the average moves as it would have had the classifier seen the same face again; with every face classified
on every frame this is the plain per-frame average.
"""

from __future__ import annotations

import numpy as np


class Smoother:
    def __init__(self, smooth: float = 0.5):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {smooth}")
        self.smooth = smooth
        self._smoothed: dict[int, np.ndarray] = {}
        self._classified: dict[int, np.ndarray] = {}

    def update(self, track_ids: list[int], classified: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Smoothed probabilities ``[N, K]`` of this frame's faces. ``classified`` (a bool per face) says which
        were classified on this frame; ``probs`` holds their probabilities, in order."""
        out = np.empty((len(track_ids), probs.shape[1]), np.float32)
        rows = iter(probs)
        for i, track_id in enumerate(track_ids):
            if classified[i]:
                self._classified[track_id] = next(rows)
            latest = self._classified[track_id]
            past = self._smoothed.get(track_id)
            smoothed = latest if past is None else self.smooth * past + (1.0 - self.smooth) * latest
            self._smoothed[track_id] = out[i] = smoothed
        return out

    def forget(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self._smoothed.pop(track_id, None)
            self._classified.pop(track_id, None)
