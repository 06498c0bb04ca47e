"""IoU tracking of faces across frames of one source, and per-track smoothing of probabilities.

Greedy matching by IoU (faces in a frame are few, so the O(n·m) matrix is cheap). A track keeps an
exponential moving average of its probabilities: ``smooth`` is the weight of the past (0 = raw output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4], boxes as x, y, w, h."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * \
        np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-6)


@dataclass
class Track:
    id: int
    box: np.ndarray
    probs: np.ndarray
    missed: int = 0


class Tracker:
    def __init__(self, smooth: float = 0.5, iou_threshold: float = 0.3, max_missed: int = 15):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {smooth}")
        self.smooth = smooth
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: np.ndarray, probs: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Track ids for this frame's faces and their smoothed probabilities (same order as ``boxes``)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        smoothed = np.array(probs, np.float32, copy=True)
        if smoothed.ndim == 1:
            smoothed = smoothed.reshape(len(boxes), -1)
        ious = iou_matrix(boxes, np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4))
        assigned: list[Track | None] = [None] * len(boxes)
        taken: set[int] = set()
        for flat in np.argsort(-ious, axis=None):
            face, track = np.unravel_index(flat, ious.shape)
            if ious[face, track] < self.iou_threshold:
                break
            if assigned[face] is None and track not in taken:
                assigned[face] = self.tracks[track]
                taken.add(track)
        for i, track in enumerate(assigned):
            if track is None:
                track = Track(self._next_id, boxes[i], smoothed[i])
                self._next_id += 1
                self.tracks.append(track)
                taken.add(len(self.tracks) - 1)
            else:
                track.probs = self.smooth * track.probs + (1.0 - self.smooth) * smoothed[i]
                track.box, track.missed = boxes[i], 0
                smoothed[i] = track.probs
            assigned[i] = track
        for index, track in enumerate(self.tracks):
            if index not in taken:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [t.id for t in assigned], smoothed
